-- The queue library: built only on the paths that touch a queue (closures cost time on every call).
-- Q: sorted set waiter_id -> arrival seq. W: hash waiter_id -> "deadline_ms\nkind\nclient\nttl_ms\n".
local function queue_lib(L, Q, W, CHAN)
  local q = {}
  function q.waiter(id)
    local info = redis.call('HGET', W, id)
    if not info then return nil end
    local dl, kind, client, ttl = string.match(info, '^(%d+)\n([^\n]*)\n([^\n]*)\n(%d+)')
    return { deadline = tonumber(dl), kind = kind, client = client, ttl = tonumber(ttl) }
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
  -- Publishes the waiters that may proceed now: the exclusive head of a free lock, or the run of shared
  -- waiters at the head of a free or shared lock.
  function q.notify_eligible()
    local head, hw = q.clean_head()
    if not head then return end
    local st = q.lock_state()
    if st == 'held' then return end
    if is_excl(hw.kind) then
      if st == 'free' then redis.call('PUBLISH', CHAN, head) end
      return
    end
    local ids = {}
    for _, id in ipairs(redis.call('ZRANGE', Q, 0, 999)) do
      local w = q.waiter(id)
      if w and w.deadline >= NOW then
        if is_excl(w.kind) then break end
        ids[#ids + 1] = id
      end
    end
    if #ids > 0 then redis.call('PUBLISH', CHAN, table.concat(ids, ' ')) end
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
