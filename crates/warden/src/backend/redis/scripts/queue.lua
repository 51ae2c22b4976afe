-- The queue library (after lib.lua). Q: sorted set waiter_id -> place (see arrival_place). W: hash waiter_id ->
-- "deadline_ms\nkind\nclient\nttl_ms\ntoken\nmax_renewals\nmax_hold_ms\nwaiter_lease_ms\n" (the tail is what a
-- direct handoff needs). Both vanish with their last waiter.
local function waiter_info(deadline, kind, client, ttl, tok, max_ren, max_hold, wl)
  return ms(deadline) .. '\n' .. kind .. '\n' .. client .. '\n' .. ttl .. '\n' .. tok .. '\n' .. max_ren .. '\n'
    .. max_hold .. '\n' .. wl .. '\n'
end

-- The next arrival's place: the server clock in µs less its priority's head start (100 ms per level: the
-- library's PRIORITY_STEP), after any waiter already at that very place (FIFO within one place). (A queue left
-- by an earlier version holds small integers: those waiters stay ahead.)
local function arrival_place(Q, priority)
  local place = tonumber(CLOCKS) - (tonumber(priority) or 0) * 100000
  while redis.call('ZCOUNT', Q, place, place) > 0 do place = place + 1 end
  return place
end

local function queue_lib(L, Q, W)
  local q = {}
  function q.waiter(id)
    local info = redis.call('HGET', W, id)
    if not info then return nil end
    local dl, kind, client, ttl, tok, mren, mhold, wl =
      string.match(info, '^(%d+)\n([^\n]*)\n([^\n]*)\n(%d+)\n([^\n]*)\n(-?%d+)\n(%d+)\n(%d+)\n')
    if not dl then return nil end
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
  -- 'free' | 'shared' (shared or semaphore holders) | 'held' (exclusive or foreign), dropping expired readers.
  function q.lock_state()
    local ty = redis.call('TYPE', L)['ok']
    if ty == 'none' then return 'free' end
    if ty == 'zset' then
      redis.call('ZREMRANGEBYSCORE', L, '-inf', '(' .. NOWS)
      if redis.call('ZCARD', L) == 0 then return 'free' end
      return 'shared'
    end
    return 'held'
  end
  -- Lets the waiters that may proceed now do so: the exclusive head of a free lock, the run of non-exclusive
  -- waiters at the head of a free or shared lock whose kinds suit the holders and each other, or a semaphore's
  -- first waiters, one per free permit (dead ones skipped).
  -- Without K they are woken (their own attempt takes the lock). With K (the resource's tag, fence key and
  -- name; a release passes them) the lock is handed to them in this step (direct handoff), published as
  -- 'waiter_id:fence:acquired_ms:expires_ms', so the next holder needs no round trip of its own. A handed
  -- lease lasts min(ttl, waiter lease): a waiter that died while queued blocks the lock no longer than it
  -- would have blocked the queue; a live one claims its ttl with its first renewal.
  -- Waiters queued without a token get a plain wake-up. Returns the kinds handed over (for the statistics).
  function q.notify_eligible(K)
    local kinds = {}
    local function proceed(id, w)
      if not (K and w.tok) then return id end
      local exp = NOW + math.min(w.ttl, w.wl)
      local exps = ms(exp)
      redis.call('ZREM', Q, id)
      redis.call('HDEL', W, id)
      if is_excl(w.kind) then
        redis.call('SET', L, held_value(w.tok, Q), 'PXAT', exps)
      else
        add_holder(string.sub(Q, 1, 6), L, w.kind, w.tok, exps)
      end
      local fs = record_grant(K.F, w.tok, w.kind, w.client, w.ttls, exps, exp - NOW < w.ttl, w.mrens, w.mholds,
        K.resource)
      kinds[#kinds + 1] = w.kind
      return id .. ':' .. fs .. ':' .. NOWS .. ':' .. exps
    end
    local head, hw = q.clean_head()
    if not head then return kinds end
    local st = q.lock_state()
    if st == 'held' then return kinds end
    if is_excl(hw.kind) then
      if st == 'free' then
        local msg = proceed(head, hw)
        if #kinds > 0 then
          -- Handed over: tell the next in line when this lease ends, so it wakes then (its own timer may
          -- still point at an earlier holder's expiry).
          local nxt = redis.call('ZRANGE', Q, 0, 0)[1]
          if nxt then msg = msg .. ' ' .. nxt .. '@' .. math.min(hw.ttl, hw.wl) end
        end
        publish(Q, msg)
      end
      return kinds
    end
    local msgs = {}
    -- A semaphore lets as many of its first waiters proceed as permits are free.
    local left = nil
    if is_sem(hw.kind) then left = permits_of(hw.kind) - (st == 'free' and 0 or redis.call('ZCARD', L)) end
    -- Otherwise the run at the head whose kinds suit the holders and each other goes (shared and
    -- intent-exclusive exclude each other; what is handed over joins the holders).
    local b, run_s, run_x = string.sub(Q, 1, 6), false, false
    for _, id in ipairs(redis.call('ZRANGE', Q, 0, 999)) do
      if left and left <= 0 then break end
      local w = q.waiter(id)
      if w and w.deadline >= NOW then
        if is_excl(w.kind) then break end
        local s, x = w.kind == 'shared' or w.kind == 'read', w.kind == 'intent-exclusive'
        if (s and run_x) or (x and run_s) or ((s or x) and shared_rivals(b, L, w.kind)) then break end
        run_s, run_x = run_s or s, run_x or x
        msgs[#msgs + 1] = proceed(id, w)
        if left then left = left - 1 end
      end
    end
    if #kinds > 0 then
      local top = redis.call('ZRANGE', L, -1, -1, 'WITHSCORES')
      redis.call('PEXPIREAT', L, top[2])
    end
    if #msgs > 0 then publish(Q, table.concat(msgs, ' ')) end
    return kinds
  end
  -- What the resource is in use as: a semaphore's kind ('semaphore:3'), 'lock', or nil (idle). st: lock_state();
  -- head, hw: the queue's live head, if known.
  function q.usage(st, head, hw)
    if st == 'held' then return 'lock' end
    if st == 'shared' then
      local first = redis.call('ZRANGE', L, 0, 0)[1]
      local rec = redis.call('HGET', hkey(first), first)
      local kind = rec and string.match(rec, '^!?([^\n]*)')
      if kind and is_sem(kind) then return kind end
      return 'lock'
    end
    if head then
      if is_sem(hw.kind) then return hw.kind end
      return 'lock'
    end
    return nil
  end
  return q
end
