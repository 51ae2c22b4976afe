-- Shared by every script. ARGV[1..5]: prefix, channel, mode ('1' = a release grants the queue's head in the
-- same step; 's' = the same, on a Redis Cluster node: wake-ups go out on the slot's shard channel; '' (Redlock's
-- nodes) = only wake it), retain_ms (how long a fence counter lives, and how long the
-- record of an expired lease is kept), max_waiters (per resource).
--
-- Keys of a resource (see keys.rs): the lock key L = prefix .. resource; every other key starts with
-- '{tag}\1', the tag being the three characters that lead every lock id of the resource (their slot is L's
-- slot) and \1 a byte no resource name may hold:
--   '{tag}\1f' .. L        the last fence (string), expires retain_ms after the last grant
--   '{tag}\1q' .. L        queue: sorted set waiter_id -> arrival order
--   '{tag}\1w' .. L        waiters: hash waiter_id -> waiter_info()
--   '{tag}\1x' .. L, '{tag}\1i' .. L   intent-exclusive and intent-shared holders (also in L): token -> expiry
--   '{tag}\1h' .. prefix   the slot's leases: hash token -> record(); a record whose lease expired unreleased
--                          is marked '!' by the sweep (counted once) and dropped retain_ms later
local PREFIX, CHAN, HANDOFF, RETAINS = ARGV[1], ARGV[2], ARGV[3] ~= '', ARGV[4]
local SHARDED = ARGV[3] == 's'
local RETAIN, MAX_WAITERS = tonumber(RETAINS), tonumber(ARGV[5])
-- The server clock in µs (CLOCKS) and in ms (NOWS, NOW), built as strings: number formatting and parsing
-- (strtod on 13-16 digits) cost Redis more than the string operations here.
local T = redis.call('TIME')
local CLOCKS = T[1] .. string.sub('00000', #T[2]) .. T[2]
local NOWS = string.sub(CLOCKS, 1, -4)
local NOW = tonumber(NOWS)
-- Integers go to redis.call and into records as strings formatted here: a Lua number handed to redis.call (or
-- tostring) is converted as a float, at about three times the cost.
local function ms(n) return string.format('%d', n) end
-- Whether decimal integer string a (no sign, no leading zeros) is at least b, without parsing either.
local function ge(a, b) return #a > #b or (#a == #b and a >= b) end
local function is_excl(kind) return kind == 'exclusive' or kind == 'write' end
-- A semaphore's kind carries its permits: 'semaphore:3'.
local function is_sem(kind) return string.sub(kind, 1, 10) == 'semaphore:' end
local function permits_of(kind) return tonumber(string.sub(kind, 11)) end
-- Whether holders of kinds a and b may hold one resource at once (semaphores aside: they never share a name
-- with a lock): the matrix of multi-granularity locking, shared and read being S, exclusive and write X.
local function compatible(a, b)
  if is_excl(a) or is_excl(b) then return false end
  if a == 'intent-shared' or b == 'intent-shared' then return true end
  if a == 'intent-exclusive' or b == 'intent-exclusive' then return a == b end
  return true
end
-- The set that also keeps the holders of an intention kind (b: the resource's '{tag}\1'), or nil.
local function intent_key(b, L, kind)
  if kind == 'intent-exclusive' then return b .. 'x' .. L end
  if kind == 'intent-shared' then return b .. 'i' .. L end
  return nil
end
local function live(Z) return redis.call('ZCOUNT', Z, NOWS, '+inf') end
-- Whether a live holder excludes a non-exclusive kind: shared (or read) and intent-exclusive exclude each
-- other. Shared holders are the live members of L that are no intention: plain shared locks pay nothing.
local function shared_rivals(b, L, kind)
  if kind == 'shared' or kind == 'read' then return live(b .. 'x' .. L) > 0 end
  if kind == 'intent-exclusive' then return live(L) - live(b .. 'x' .. L) - live(b .. 'i' .. L) > 0 end
  return false
end
-- Adds (or renews, with 'XX') a non-exclusive holder: to L, and an intention to its own set too. Every key
-- expires with its last holder.
local function add_holder(b, L, kind, tok, exps, xx)
  local keys = { L, intent_key(b, L, kind) }
  for _, K in ipairs(keys) do
    if xx then redis.call('ZADD', K, 'XX', exps, tok) else redis.call('ZADD', K, exps, tok) end
    local top = redis.call('ZRANGE', K, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', K, top[2])
  end
end
-- Kinds as the low two bits of a release's integer reply.
local KIND_BITS = { exclusive = 0, shared = 1, read = 2, write = 3 }

-- Wake-ups of a resource whose internal keys start with K's '{tag}': on one node, the channel; on a cluster
-- node, the shard channel of the resource's slot (SPUBLISH reaches only that slot's subscribers).
local function publish(K, msg)
  if SHARDED then
    redis.call('SPUBLISH', string.sub(K, 1, 5) .. CHAN, msg)
  else
    redis.call('PUBLISH', CHAN, msg)
  end
end

-- '{tag}\1' for a tag, and the slot's lease hash of a token.
local function base(tag) return '{' .. tag .. '}\1' end
local function hkey(tok) return '{' .. string.sub(tok, 1, 3) .. '}\1h' .. PREFIX end
local function res_keys(tag, resource)
  local L = PREFIX .. resource
  local b = base(tag)
  return L, b .. 'f' .. L, b .. 'q' .. L, b .. 'w' .. L
end

-- A lease record, the resource name last:
-- kind \n client \n acquired_ms \n expires_ms \n ttl_ms \n fence \n renewals \n max_renewals(-1) \n max_hold_ms(0) \n resource
-- Written by concatenation of ready strings (a quarter of what string.format with %d's costs).
local function record(kind, client, acq, exp, ttl, fence, renewals, max_renewals, max_hold, resource)
  return kind .. '\n' .. client .. '\n' .. acq .. '\n' .. exp .. '\n' .. ttl .. '\n' .. fence .. '\n' .. renewals
    .. '\n' .. max_renewals .. '\n' .. max_hold .. '\n' .. resource
end
local function parse(rec)
  local kind, client, acq, exp, ttl, fence, ren, mren, mhold, res = string.match(rec,
    '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
  if not kind then return nil end
  return { kind = kind, client = client, acq = tonumber(acq), exp = tonumber(exp), ttl = tonumber(ttl),
           fence = fence, renewals = tonumber(ren), max_renewals = tonumber(mren), max_hold = tonumber(mhold),
           resource = res }
end
-- The fields a release needs (kind, client, acquired, expires, resource): fewer captures than parse().
local function parse_brief(rec)
  local kind, client, acq, exp, res = string.match(rec,
    '^([^\n]*)\n([^\n]*)\n(%d+)\n(%d+)\n[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n(.*)$')
  if not kind then return nil end
  return kind, client, tonumber(acq), tonumber(exp), res
end

-- An exclusive holder's lock key holds its token, followed by '+' once a waiter may be queued behind it: a
-- release that finds the bare token needs no look at the queue. (Only warden's own values are marked; a
-- `SET NX` client's value is never touched.)
local function holds(L, tok, excl)
  if excl then
    local v = redis.pcall('GET', L)
    return v == tok or v == tok .. '+'
  end
  local s = redis.pcall('ZSCORE', L, tok)
  return type(s) == 'string' and tonumber(s) >= NOW
end
-- The value an exclusive grant of `tok` writes: marked when waiters remain queued.
local function held_value(tok, Q)
  if redis.call('EXISTS', Q) == 1 then return tok .. '+' end
  return tok
end

-- Records a grant of `tok` on a resource (its fence key F): the fence and the lease record in the slot's lease
-- hash. The fence is the greater of the last fence + 1 and the server clock in µs, so it never goes back: not when
-- the counter expired (a resource idle for retain_ms leaves nothing behind), nor when it was lost or is older
-- than the last grants (a restart without the last writes, a failover to a replica that missed them), as long
-- as the clock of the node that grants does not stand behind the clock of the one that granted before (a node
-- grants fewer than one lease per µs, so the counter rarely runs ahead of the clock). Redlock passes fence_t,
-- agreed over a quorum, instead. A provisional grant (handed to a waiter for less than its ttl) starts at
-- renewals = -1: its first renewal, which claims the full ttl, is not counted against max_renewals. Returns
-- the fence (a decimal string).
local function record_grant(F, tok, kind, client, ttls, exps, provisional, mrens, mholds, resource, fence_t)
  local fs
  if fence_t then
    fs = ms(fence_t)
    redis.call('SET', F, fs, 'PX', RETAINS)
  else
    -- One command in the common case: the clock is ahead of the stored fence, which it replaces (and returns).
    fs = CLOCKS
    local old = redis.call('SET', F, fs, 'PX', RETAINS, 'GET')
    if old and ge(old, fs) then
      fs = ms(tonumber(old) + 1)
      redis.call('SET', F, fs, 'PX', RETAINS)
    end
  end
  redis.call('HSET', hkey(tok), tok, record(kind, client, NOWS, exps, ttls, fs, provisional and '-1' or '0', mrens,
    mholds, resource))
  return fs
end
