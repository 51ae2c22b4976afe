-- KEYS: L, F, Q, W, TOK, IDX, STATS, TOP
-- ARGV: token, kind, ttl_ms, client, waiter_id ('' = do not queue), waiter_lease_ms, max_renewals (-1),
--       max_hold_ms (0), max_waiters, resource, channel,
--       fence_t ('' = this node counts; else Redlock: grant only if the stored fence is below it, then store it),
--       queue_score ('' = arrival order on this node; else the waiter's own score, the same on every node)
-- Returns {1, fence, acquired_ms, expires_ms, still_queued (Redlock), earlier (-1: granted by this call; else the ms the
--       lease had left when this call found it granted earlier)} | {0, retry_in_ms (-1 = unknown), now_ms} | {-1, 'queue_full'}
--       | {-2, stored_fence} (Redlock: a grant with a fence >= fence_t already happened on this node).
local L, F, Q, W, TOK, IDX, STATS, TOP = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local tok, kind, ttls, client, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl = tonumber(ttls)
local excl = is_excl(kind)
local exp = NOW + ttl
local exps = ms(exp)
local fence_t = tonumber(ARGV[12] or '')
local pinned = fence_t ~= nil and me ~= ''
if fence_t then
  local stored = tonumber(redis.call('HGET', F, 'fence') or '0')
  if stored >= fence_t and not (stored == fence_t and redis.call('HEXISTS', TOK, tok) == 1) then
    return { -2, string.format('%d', stored) }
  end
end

local function grant()
  local K = { F = F, TOK = TOK, IDX = IDX, STATS = STATS, TOP = TOP, resource = ARGV[10] }
  local fs = record_grant(K, tok, kind, client, ttls, exps, false, ARGV[7], ARGV[8], fence_t)
  local still_queued = 0
  if pinned and redis.call('ZSCORE', Q, me) then still_queued = 1 end
  return { 1, fs, NOW, exp, still_queued, -1 }
end
local function winfo()
  return waiter_info(NOW + tonumber(ARGV[6]), kind, client, ttl, tok, tonumber(ARGV[7]), tonumber(ARGV[8]),
    tonumber(ARGV[6]))
end

-- Redlock waiters join the queue first, on every node, with the same score, and stay queued when a node
-- grants them (the client leaves every queue once it holds a quorum): so every node agrees on the head.
-- (A free lock with an empty queue is granted at once below, without queueing.)
if pinned and not (redis.call('EXISTS', Q) == 0 and redis.call('EXISTS', L) == 0)
    and not redis.call('ZSCORE', Q, me) then
  if redis.call('ZCARD', Q) >= tonumber(ARGV[9]) then return { -1, 'queue_full' } end
  redis.call('ZADD', Q, tonumber(ARGV[13] or '') or redis.call('HINCRBY', F, 'qseq', 1), me)
  redis.call('HSET', W, me, winfo())
end

-- Fast path: no queue, exclusive. One SET NX decides.
local queued = redis.call('EXISTS', Q) == 1
if excl and not queued then
  if redis.call('SET', L, tok, 'NX', 'PXAT', exps) then return grant() end
end

-- Idempotent per token: a retried attempt whose first try was applied, or a waiter the lock was handed to
-- (a release grants the head directly) gets the same grant back, flagged as made earlier.
local mine = redis.call('HGET', TOK, tok)
if mine then
  local r = parse(mine)
  local held
  if excl then held = redis.pcall('GET', L) == tok else held = redis.pcall('ZSCORE', L, tok) end
  if r and held and type(held) ~= 'table' then return { 1, r.fence, r.acq, r.exp, 0, r.exp - NOW } end
  return { 0, -1, NOW }
end

local q = queue_lib(L, Q, W, ARGV[11])
local head, hw, cleaned = nil, nil, false
if queued then head, hw, cleaned = q.clean_head() end
local allowed = true
if head then
  if excl then
    allowed = (head == me)
  else
    for _, id in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
      if id == me then break end
      local w = q.waiter(id)
      if w and w.deadline >= NOW and is_excl(w.kind) then allowed = false break end
    end
  end
end

local st = q.lock_state()
if allowed and (st == 'free' or (st == 'shared' and not excl)) then
  if excl then
    redis.call('SET', L, tok, 'PXAT', exps)
  else
    redis.call('ZADD', L, exps, tok)
    local top = redis.call('ZRANGE', L, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', L, top[2])
  end
  if me ~= '' and head and not pinned then
    redis.call('ZREM', Q, me)
    redis.call('HDEL', W, me)
  end
  return grant()
end

if me ~= '' then
  if not redis.call('ZSCORE', Q, me) then
    if redis.call('ZCARD', Q) >= tonumber(ARGV[9]) then return { -1, 'queue_full' } end
    local score = tonumber(ARGV[13] or '') or redis.call('HINCRBY', F, 'qseq', 1)
    redis.call('ZADD', Q, score, me)
  end
  redis.call('HSET', W, me, winfo())
end
if cleaned then q.notify_eligible() end

local retry = -1
if st == 'held' then
  retry = redis.call('PTTL', L)
elseif st == 'shared' and excl then
  local first = redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')
  if #first == 2 then retry = tonumber(first[2]) - NOW end
end
return { 0, retry, NOW }
