-- The queue library: built only on the paths that touch a queue (closures cost time on every call).
-- Q: sorted set waiter_id -> arrival seq. W: hash waiter_id ->
-- "deadline_ms\nkind\nclient\nttl_ms\ntoken\nmax_renewals\nmax_hold_ms\nwaiter_lease_ms\n" (the tail is what a
-- direct handoff needs).
local function waiter_info(deadline, kind, client, ttl, tok, max_ren, max_hold, wl)
  return string.format('%d\n%s\n%s\n%d\n%s\n%d\n%d\n%d\n', deadline, kind, client, ttl, tok, max_ren, max_hold,
    wl)
end

-- Records a grant of `tok`: the fence (+1 per grant; a counter lost with the node's data is re-seeded from the
-- server clock in µs, above every earlier fence while grants stayed below one per µs and the clock did not jump
-- back; Redlock passes fence_t instead), the lease record, the expiry index and the statistics.
-- ttls, exps, mrens, mholds: the ttl, expiry, max renewals and max hold as decimal strings (see ms()).
-- A provisional grant (handed to a waiter for less than its ttl) starts at renewals = -1: its first renewal,
-- which claims the full ttl, is not counted against max_renewals.
local function record_grant(K, tok, kind, client, ttls, exps, provisional, mrens, mholds, fence_t)
  local fs
  if fence_t then
    fs = ms(fence_t)
    redis.call('HSET', K.F, 'fence', fs)
  else
    local fence = redis.call('HINCRBY', K.F, 'fence', '1')
    if fence == 1 then
      fence = tonumber(T[1]) * 1000000 + tonumber(T[2])
      fs = ms(fence)
      redis.call('HSET', K.F, 'fence', fs)
    else
      fs = ms(fence)
    end
  end
  redis.call('HSET', K.TOK, tok, record(kind, client, ms(NOW), exps, ttls, fs, provisional and '-1' or '0', mrens,
    mholds, K.resource))
  redis.call('ZADD', K.IDX, exps, tok)
  redis.call('HINCRBY', K.STATS, 'grants:' .. kind, '1')
  redis.call('HINCRBY', K.TOP, K.resource, '1')
  return fs
end

local function queue_lib(L, Q, W, CHAN)
  local q = {}
  function q.waiter(id)
    local info = redis.call('HGET', W, id)
    if not info then return nil end
    local dl, kind, client, ttl, tok, mren, mhold, wl =
      string.match(info, '^(%d+)\n([^\n]*)\n([^\n]*)\n(%d+)\n([^\n]*)\n(-?%d+)\n(%d+)\n(%d+)\n')
    if not dl then
      dl, kind, client, ttl = string.match(info, '^(%d+)\n([^\n]*)\n([^\n]*)\n(%d+)')
    end
    if tok == '' then tok = nil end
    return { deadline = tonumber(dl), kind = kind, client = client, ttl = tonumber(ttl), tok = tok, ttls = ttl,
             mrens = mren, mholds = mhold, wl = tonumber(wl) }
  end
  -- Drops expired waiters at the head. Returns the live head (id, waiter) or nil, and whether any was dropped.
  function q.clean_head()
    local cleaned = false
    while true do
      local h = redis.call('ZRANGE', Q, 0, 0)
      if #h == 0 then return nil, nil, cleaned end
      local w = q.waiter(h[1])
      if w and w.deadline >= NOW then return h[1], w, cleaned end
      redis.call('ZREM', Q, h[1])
      redis.call('HDEL', W, h[1])
      cleaned = true
    end
  end
  -- 'free' | 'shared' | 'held' (exclusive or foreign), dropping expired readers.
  function q.lock_state()
    local ty = redis.call('TYPE', L)['ok']
    if ty == 'none' then return 'free' end
    if ty == 'zset' then
      redis.call('ZREMRANGEBYSCORE', L, '-inf', '(' .. NOW)
      if redis.call('ZCARD', L) == 0 then return 'free' end
      return 'shared'
    end
    return 'held'
  end
  -- Lets the waiters that may proceed now do so: the exclusive head of a free lock, or the run of shared
  -- waiters at the head of a free or shared lock (dead ones skipped).
  -- Without K they are woken (their own attempt takes the lock). With K (the resource's and the global keys
  -- F, TOK, IDX, STATS, TOP and its name; a release passes them) the lock is handed to them in this step
  -- (direct handoff), published as 'waiter_id:fence:acquired_ms:expires_ms', so the next holder needs no round
  -- trip of its own. A handed lease lasts min(ttl, waiter lease): a waiter that died while queued blocks the
  -- lock no longer than it would have blocked the queue; a live one claims its ttl with its first renewal.
  -- Waiters queued without a token get a plain wake-up.
  function q.notify_eligible(K)
    local function proceed(id, w)
      if not (K and w.tok) then return id end
      local exp = NOW + math.min(w.ttl, w.wl)
      local exps = ms(exp)
      if is_excl(w.kind) then
        redis.call('SET', L, w.tok, 'PXAT', exps)
      else
        redis.call('ZADD', L, exps, w.tok)
      end
      redis.call('ZREM', Q, id)
      redis.call('HDEL', W, id)
      local fs = record_grant(K, w.tok, w.kind, w.client, w.ttls, exps, exp - NOW < w.ttl, w.mrens, w.mholds)
      return string.format('%s:%s:%d:%d', id, fs, NOW, exp)
    end
    local head, hw = q.clean_head()
    if not head then return end
    local st = q.lock_state()
    if st == 'held' then return end
    if is_excl(hw.kind) then
      if st == 'free' then redis.call('PUBLISH', CHAN, proceed(head, hw)) end
      return
    end
    local msgs, handed = {}, false
    for _, id in ipairs(redis.call('ZRANGE', Q, 0, 999)) do
      local w = q.waiter(id)
      if w and w.deadline >= NOW then
        if is_excl(w.kind) then break end
        if K and w.tok then handed = true end
        msgs[#msgs + 1] = proceed(id, w)
      end
    end
    if handed then
      local top = redis.call('ZRANGE', L, -1, -1, 'WITHSCORES')
      redis.call('PEXPIREAT', L, top[2])
    end
    if #msgs > 0 then redis.call('PUBLISH', CHAN, table.concat(msgs, ' ')) end
  end
  return q
end

-- Helper keys of a resource, in its lock key's Redis Cluster hash slot (mirrors keys() in redis.rs).
local function keys_for(prefix, resource)
  local L = prefix .. resource
  local o = string.find(L, '{', 1, true)
  local base
  if o then
    local c = string.find(L, '}', o + 1, true)
    if c and c > o + 1 then base = '{' .. string.sub(L, o + 1, c - 1) .. '}warden:' .. L end
  end
  if not base then base = '{' .. L .. '}warden' end
  return L, base .. ':f', base .. ':q', base .. ':w'
end
