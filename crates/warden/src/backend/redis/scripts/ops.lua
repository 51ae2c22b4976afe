-- The lease protocol's steps (after lib.lua and queue.lua). Each reads its arguments from ARGV[i..].

-- Marks an exclusive warden holder's value (see holds()) now that a waiter is queued behind it.
local function mark_waited(L)
  local v = redis.pcall('GET', L)
  if type(v) == 'string' and string.byte(v, -1) ~= 43 and redis.call('HEXISTS', hkey(v), v) == 1 then
    redis.call('SET', L, v .. '+', 'KEEPTTL', 'XX')
  end
end

-- The rest of an acquire: Redlock's fence check, queueing, the queue's order, idempotent retries.
local function acquire_slow(i, tag, L, F, Q, W, exp, exps, excl, fence_t, queued_unknown)
  local tok, kind, ttls, client, me = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local resource = ARGV[i + 8]
  local pinned = fence_t ~= nil and me ~= ''
  if fence_t then
    local stored = tonumber(redis.call('GET', F) or '0')
    if stored >= fence_t and not (stored == fence_t and redis.call('HEXISTS', hkey(tok), tok) == 1) then
      return { -2, ms(stored) }
    end
  end
  local function grant()
    local fs = record_grant(F, tok, kind, client, ttls, exps, false, ARGV[i + 6], ARGV[i + 7], resource, fence_t)
    local still_queued = 0
    if pinned and redis.call('ZSCORE', Q, me) then still_queued = 1 end
    return { 1, fs, NOW, exp, still_queued, -1 }
  end
  local queued = false
  if queued_unknown then
    queued = redis.call('EXISTS', Q) == 1
    if excl and not queued and not pinned then
      if redis.call('SET', L, tok, 'NX', 'PXAT', exps) then return grant() end
    end
  end

  local function winfo()
    -- A conditional waiter carries no token: a release wakes it rather than handing it the lock, and its own
    -- attempt judges the condition in the step that grants.
    local handed = tok
    if ARGV[i + 11] ~= '' then handed = '' end
    return waiter_info(NOW + tonumber(ARGV[i + 5]), kind, client, ttls, handed, ARGV[i + 6], ARGV[i + 7],
      ARGV[i + 5])
  end
  -- Whether this waiter joined ahead of someone (a priority): whoever may proceed is then told.
  local overtook = false
  local function join()
    if redis.call('ZCARD', Q) >= MAX_WAITERS then return false end
    local place = tonumber(ARGV[i + 10]) or arrival_place(Q, ARGV[i + 12])
    overtook = redis.call('ZCOUNT', Q, '(' .. place, '+inf') > 0
    redis.call('ZADD', Q, place, me)
    return true
  end
  -- Redlock waiters join the queue first, on every node, with the same score, and stay queued when a node
  -- grants them (the client leaves every queue once it holds a quorum): so every node agrees on the head.
  -- (A free lock with an empty queue is granted at once below, without queueing.)
  if pinned and (queued or redis.call('EXISTS', L) == 1) and not redis.call('ZSCORE', Q, me) then
    if not join() then return { -1, 'queue_full' } end
    redis.call('HSET', W, me, winfo())
    mark_waited(L)
    queued = true
  end
  if pinned and not queued and excl then
    if redis.call('SET', L, tok, 'NX', 'PXAT', exps) then return grant() end
  end

  -- Idempotent per token: a retried attempt whose first try was applied, or a waiter the lock was handed to
  -- (a release grants the head directly) gets the same grant back, flagged as made earlier.
  local mine = redis.call('HGET', hkey(tok), tok)
  if mine then
    local r = parse(mine)
    if r and holds(L, tok, excl) then return { 1, r.fence, r.acq, r.exp, 0, r.exp - NOW } end
    return { 0, -1, NOW }
  end

  local q = queue_lib(L, Q, W)
  local head, hw, cleaned = nil, nil, false
  if queued then head, hw, cleaned = q.clean_head() end
  local st = q.lock_state()
  local sem = is_sem(kind)
  -- A semaphore and a lock never share a name, nor two semaphores with different permits.
  if sem or st == 'shared' or head then
    local use = q.usage(st, head, hw)
    local want = sem and kind or 'lock'
    if use and use ~= want then return { -3, use } end
  end
  local allowed = true
  if sem then
    -- Granted while fewer live waiters are ahead than permits are free.
    local free = permits_of(kind) - (st == 'shared' and redis.call('ZCARD', L) or 0)
    local ahead = 0
    if head then
      for _, id in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
        if id == me or ahead >= free then break end
        local w = q.waiter(id)
        if w and w.deadline >= NOW then ahead = ahead + 1 end
      end
    end
    allowed = ahead < free
  elseif head then
    if excl then
      allowed = (head == me)
    else
      for _, id in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
        if id == me then break end
        local w = q.waiter(id)
        if w and w.deadline >= NOW and not compatible(kind, w.kind) then allowed = false break end
      end
    end
  end

  if allowed and (st == 'free' or (st == 'shared' and not excl and not shared_rivals(base(tag), L, kind))) then
    if me ~= '' and head and not pinned then
      redis.call('ZREM', Q, me)
      redis.call('HDEL', W, me)
    end
    if excl then
      redis.call('SET', L, held_value(tok, Q), 'PXAT', exps)
    else
      add_holder(base(tag), L, kind, tok, exps)
    end
    return grant()
  end

  if me ~= '' then
    if not redis.call('ZSCORE', Q, me) then
      if not join() then return { -1, 'queue_full' } end
    end
    redis.call('HSET', W, me, winfo())
    if st == 'held' then mark_waited(L) end
  end
  if cleaned or overtook then q.notify_eligible() end

  local retry = -1
  if st == 'held' then
    retry = redis.call('PTTL', L)
  elseif st == 'shared' and (excl or sem or shared_rivals(base(tag), L, kind)) then
    -- (For an intention or a shared lock, the first holder to end: perhaps not the one in the way.)
    local first = redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')
    if #first == 2 then retry = tonumber(first[2]) - NOW end
  end
  return { 0, retry, NOW }
end

-- Whether a conditional acquire's condition holds on the resource's last fence F: cond is 'f' .. token (the last
-- fence is still that token) or 'g' .. window_us (no grant within the window; a fence is at least its grant's
-- clock in µs). Returns nil if it holds, else the last fence ('' = not remembered).
local function condition_fails(F, cond)
  local last = redis.call('GET', F)
  local c = string.sub(cond, 1, 1)
  if c == 'f' then
    if last == string.sub(cond, 2) then return nil end
    return last or ''
  end
  if not last or tonumber(CLOCKS) - tonumber(last) >= tonumber(string.sub(cond, 2)) then return nil end
  return last
end

-- 'A' acquire. ARGV[i..]: token, kind, ttl_ms, client, waiter_id ('' = do not queue), waiter_lease_ms,
--   max_renewals (-1), max_hold_ms (0), resource,
--   fence_t ('' = this node counts; else Redlock: grant only if the stored fence is below it, then store it),
--   queue_score ('' = arrival order on this node; else the waiter's own score, the same on every node),
--   condition ('' = none; else see condition_fails: judged at every attempt, in the step that grants),
--   priority (-100..=100; '' = 0: see arrival_place).
-- Returns fence (an integer: granted now, for ttl from the batch's clock) | {1, fence, acquired_ms, expires_ms,
--   still_queued (Redlock), earlier (-1: granted by this call; else the ms the lease had left when this call
--   found it granted earlier)} | {0, retry_in_ms (-1 = unknown), now_ms}
--   | {-1, 'queue_full'} | {-2, stored_fence} (Redlock: a grant with a fence >= fence_t already happened here)
--   | {-3, usage} (the resource is in use as another kind: see usage())
--   | {-4, last_fence ('' = not remembered), clock_us} (the condition does not hold).
local function acquire(i)
  local tok, kind, ttls, client, me = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local resource = ARGV[i + 8]
  local tag = string.sub(tok, 1, 3)
  local b = base(tag)
  local L = PREFIX .. resource
  local F, Q = b .. 'f' .. L, b .. 'q' .. L
  local exp = NOW + tonumber(ttls)
  local exps = ms(exp)
  local excl = is_excl(kind)
  local fence_t = tonumber(ARGV[i + 9])
  if ARGV[i + 11] ~= '' then
    local last = condition_fails(F, ARGV[i + 11])
    -- (Unless this very token was granted by an earlier try of this attempt: then the grant is answered below.)
    if last and redis.call('HEXISTS', hkey(tok), tok) == 0 then return { -4, last, CLOCKS } end
  end
  -- Fast path: exclusive, no queue, not Redlock. One SET NX decides.
  if excl and not fence_t and redis.call('EXISTS', Q) == 0 then
    if redis.call('SET', L, tok, 'NX', 'PXAT', exps) then
      return tonumber(record_grant(F, tok, kind, client, ttls, exps, false, ARGV[i + 6], ARGV[i + 7], resource))
    end
    return acquire_slow(i, tag, L, F, Q, b .. 'w' .. L, exp, exps, excl, nil, false)
  end
  -- Fast path of a semaphore: an idle resource (no holder, nobody queued) takes its first permit.
  if not fence_t and not excl and is_sem(kind) and redis.call('EXISTS', L, Q) == 0 then
    redis.call('ZADD', L, exps, tok)
    redis.call('PEXPIREAT', L, exps)
    return tonumber(record_grant(F, tok, kind, client, ttls, exps, false, ARGV[i + 6], ARGV[i + 7], resource))
  end
  return acquire_slow(i, tag, L, F, Q, b .. 'w' .. L, exp, exps, excl, fence_t, true)
end

-- Appends the kinds a release handed the lock to (direct handoff) to its reply.
local function after_release(out, tag, L, F, Q, W, resource)
  if redis.call('EXISTS', Q) == 1 then
    local K = nil
    if HANDOFF then K = { tag = tag, F = F, resource = resource } end
    for _, k in ipairs(queue_lib(L, Q, W).notify_eligible(K)) do out[#out + 1] = k end
  end
  return out
end

-- 'R' release. ARGV[i..]: token, client ('' = any).
-- Returns held_ms * 4 + kind bits (an integer: released, nothing handed over)
--   | {'ok', held_ms, kind, resource, handed kinds...} | {'lost', held_ms, kind, resource, uncounted, handed...}
--   | 'not_found' | 'not_owner'. uncounted = 1: no sweep counted the expiry yet (count it now).
local function release(i)
  local tok, client = ARGV[i], ARGV[i + 1]
  local H = hkey(tok)
  local rec = redis.call('HGET', H, tok)
  if not rec then return 'not_found' end
  local kind, owner, acq, exp, resource = parse_brief(rec)
  if not kind then return redis.error_reply('malformed lease record') end
  if client ~= '' and client ~= owner then return 'not_owner' end
  local swept = string.byte(kind, 1) == 33
  if swept then kind = string.sub(kind, 2) end
  local tag = string.sub(tok, 1, 3)
  local L, F, Q, W = res_keys(tag, resource)
  local excl = is_excl(kind)
  local held, marked = false, false
  if not swept and exp >= NOW then
    if excl then
      local v = redis.pcall('GET', L)
      held, marked = v == tok or v == tok .. '+', v == tok .. '+'
    else
      held = holds(L, tok, false)
    end
  end
  redis.call('HDEL', H, tok)
  if not held then
    return after_release({ 'lost', math.min(exp, NOW) - acq, kind, resource, swept and 0 or 1 }, tag, L, F, Q, W,
      resource)
  end
  if excl then
    -- A bare token means nobody queued behind this holder: no look at the queue.
    redis.call('DEL', L)
    if not marked then return (NOW - acq) * 4 + KIND_BITS[kind] end
  else
    redis.call('ZREM', L, tok)
    local I = intent_key(base(tag), L, kind)
    if I then redis.call('ZREM', I, tok) end
    local top = redis.call('ZRANGE', L, -1, -1, 'WITHSCORES')
    if #top == 2 then redis.call('PEXPIREAT', L, top[2]) end
  end
  return after_release({ 'ok', NOW - acq, kind, resource }, tag, L, F, Q, W, resource)
end

-- 'N' renew. ARGV[i..]: token, ttl_ms (0 = the lease's own ttl), client ('' = any).
-- Returns {'ok', record, granted_ms} | {'capped', expires_ms} | {'not_found'} | {'not_owner'} | {'lost', resource}.
local function renew(i)
  local tok, ttl, client = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local H = hkey(tok)
  local rec = redis.call('HGET', H, tok)
  if not rec then return { 'not_found' } end
  local r = parse(rec)
  if not r then return redis.error_reply('malformed lease record') end
  if client ~= '' and client ~= r.client then return { 'not_owner' } end
  local L = PREFIX .. r.resource
  local excl = is_excl(r.kind)
  if r.exp < NOW or not holds(L, tok, excl) then return { 'lost', r.resource } end
  if r.max_renewals >= 0 and r.renewals >= r.max_renewals then return { 'capped', r.exp } end
  if ttl == 0 then ttl = r.ttl end
  local exp = NOW + ttl
  if r.max_hold > 0 then
    exp = math.min(exp, r.acq + r.max_hold)
    if exp <= NOW then return { 'capped', r.exp } end
  end
  local exps = ms(exp)
  if excl then
    redis.call('PEXPIREAT', L, exps)
  else
    add_holder(base(string.sub(tok, 1, 3)), L, r.kind, tok, exps, true)
  end
  local nrec = record(r.kind, r.client, ms(r.acq), exps, ms(ttl), r.fence, ms(r.renewals + 1), ms(r.max_renewals),
    ms(r.max_hold), r.resource)
  redis.call('HSET', H, tok, nrec)
  return { 'ok', nrec, exp - NOW }
end

-- 'L' leave the queue. ARGV[i..]: tag, resource, waiter_id. Wakes whoever may proceed now.
-- Returns 1 if the waiter was still queued, 0 if not (a release may have handed it the lock meanwhile).
local function leave(i)
  local L, _, Q, W = res_keys(ARGV[i], ARGV[i + 1])
  local was = redis.call('ZREM', Q, ARGV[i + 2])
  redis.call('HDEL', W, ARGV[i + 2])
  queue_lib(L, Q, W).notify_eligible()
  return was
end

-- 'F' Redlock's fence read. ARGV[i..]: tag, resource. The stored fence, or, when this node has none (never
-- granted, expired, or lost with its data), the server clock in µs, so that T = max + 1 never goes back.
local function fence(i)
  local _, F = res_keys(ARGV[i], ARGV[i + 1])
  local stored = redis.call('GET', F)
  if stored then return stored end
  return CLOCKS
end
