-- KEYS: TOK, IDX, STATS, TOP.  ARGV: token, client ('' = any), prefix, channel,
--       handoff ('1': grant the lock to the queue's head in this step; '' (Redlock): only wake it).
-- Returns {'ok', held_ms} | 'not_found' | 'not_owner' | 'lost'.
local TOK, IDX, STATS, TOP = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local tok, client = ARGV[1], ARGV[2]
local rec = redis.call('HGET', TOK, tok)
if not rec then return 'not_found' end
local kind, owner, acq, exp, resource = parse_brief(rec)
if not kind then return redis.error_reply('malformed lease record for ' .. tok) end
if client ~= '' and client ~= owner then return 'not_owner' end
local L, F, Q, W = keys_for(ARGV[3], resource)
local excl = is_excl(kind)
local held
if excl then
  held = redis.pcall('GET', L) == tok
else
  local s = redis.pcall('ZSCORE', L, tok)
  held = type(s) == 'string' and tonumber(s) >= NOW
end
redis.call('HDEL', TOK, tok)
redis.call('ZREM', IDX, tok)
local outcome = 'lost'
if held then
  if excl then
    redis.call('DEL', L)
  else
    redis.call('ZREM', L, tok)
    local top = redis.call('ZRANGE', L, -1, -1, 'WITHSCORES')
    if #top == 2 then redis.call('PEXPIREAT', L, top[2]) end
  end
  redis.call('HINCRBY', STATS, 'released:' .. kind, '1')
  redis.call('HINCRBY', STATS, 'hold_ms', ms(NOW - acq))
  outcome = { 'ok', NOW - acq }
else
  redis.call('HINCRBY', STATS, 'expired:' .. kind, '1')
  redis.call('HINCRBY', STATS, 'hold_ms', ms(math.min(exp, NOW) - acq))
end
if redis.call('EXISTS', Q) == 1 then
  -- Direct handoff unless Redlock (there a grant needs a quorum and a fence agreed over it: only wake).
  local K = ARGV[5] == '1' and { F = F, TOK = TOK, IDX = IDX, STATS = STATS, TOP = TOP, resource = resource } or nil
  queue_lib(L, Q, W, ARGV[4]).notify_eligible(K)
end
return outcome
