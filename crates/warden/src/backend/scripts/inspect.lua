-- KEYS: TOK, IDX, STATS, TOP.  ARGV: prefix, mode, arg.
--   mode 'resource': arg = resource -> {foreign(0/1), {token, record, held}..., '--', {waiter_id, info}...}
--   mode 'lease':    arg = token    -> {} | {token, record, held}
--   mode 'stats':    -> {stats hash as a flat list, '--', active count}  (top resources: HSCAN of TOP)
--   mode 'sweep':    arg = limit -> the expired leases ended (counted as expiries), as 'token resource' strings
local TOK, IDX, STATS, TOP = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, mode, arg = ARGV[1], ARGV[2], ARGV[3]
local out = {}

local function holds(L, tok, r)
  if is_excl(r.kind) then return redis.pcall('GET', L) == tok and r.exp >= NOW end
  local s = redis.pcall('ZSCORE', L, tok)
  return type(s) == 'string' and tonumber(s) >= NOW
end
local function push_lease(tok)
  local rec = redis.call('HGET', TOK, tok)
  if not rec then return end
  local r = parse(rec)
  if not r then return end
  out[#out + 1] = tok
  out[#out + 1] = rec
  out[#out + 1] = holds(prefix .. r.resource, tok, r) and 1 or 0
end
-- Ends leases whose expiry passed (as expiries, for the statistics); at most `limit`.
local function sweep(limit)
  local due = redis.call('ZRANGEBYSCORE', IDX, '-inf', '(' .. NOW, 'LIMIT', 0, limit)
  local ended = {}
  for _, tok in ipairs(due) do
    local rec = redis.call('HGET', TOK, tok)
    local r = rec and parse(rec)
    if r then
      redis.call('HINCRBY', STATS, 'expired:' .. r.kind, '1')
      redis.call('HINCRBY', STATS, 'hold_ms', ms(r.exp - r.acq))
      redis.call('HDEL', TOK, tok)
      ended[#ended + 1] = tok .. ' ' .. r.resource
    end
    redis.call('ZREM', IDX, tok)
  end
  return due, ended
end

if mode == 'resource' then
  local L, F, Q, W = keys_for(prefix, arg)
  local ty = redis.call('TYPE', L)['ok']
  local toks = {}
  if ty == 'string' then toks = { redis.call('GET', L) }
  elseif ty == 'zset' then toks = redis.call('ZRANGEBYSCORE', L, NOW, '+inf') end
  local foreign = 0
  if ty ~= 'none' and ty ~= 'zset' and ty ~= 'string' then foreign = 1 end
  if ty == 'string' and redis.call('HEXISTS', TOK, toks[1]) == 0 then foreign = 1 end
  out[1] = foreign
  for _, tok in ipairs(toks) do push_lease(tok) end
  out[#out + 1] = '--'
  local q = queue_lib(L, Q, W, '')
  for _, id in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
    local w = q.waiter(id)
    if w and w.deadline >= NOW then
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', W, id)
    end
  end
elseif mode == 'lease' then
  push_lease(arg)
elseif mode == 'sweep' then
  local _, ended = sweep(tonumber(arg))
  return ended
elseif mode == 'stats' then
  while #sweep(1000) == 1000 do end
  out = redis.call('HGETALL', STATS)
  out[#out + 1] = '--'
  out[#out + 1] = redis.call('ZCARD', IDX)
end
return out
