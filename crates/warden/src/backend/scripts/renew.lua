-- KEYS: TOK, IDX.  ARGV: token, ttl_ms (0 = the lease's own ttl), client ('' = any), prefix.
-- Returns {'ok', record, granted_ms} | {'capped', expires_ms} | {'not_found'} | {'not_owner'} | {'lost', resource}.
local TOK, IDX = KEYS[1], KEYS[2]
local tok, ttl, client = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local rec = redis.call('HGET', TOK, tok)
if not rec then return { 'not_found' } end
local r = parse(rec)
if not r then return redis.error_reply('malformed lease record for ' .. tok) end
if client ~= '' and client ~= r.client then return { 'not_owner' } end
local L = ARGV[4] .. r.resource
local excl = is_excl(r.kind)
local held
if excl then
  held = redis.pcall('GET', L) == tok
else
  local s = redis.pcall('ZSCORE', L, tok)
  held = type(s) == 'string' and tonumber(s) >= NOW
end
if not held then return { 'lost', r.resource } end
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
  redis.call('ZADD', L, 'XX', exps, tok)
  local top = redis.call('ZRANGE', L, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', L, top[2])
end
local rec = record(r.kind, r.client, ms(r.acq), exps, ms(ttl), r.fence, ms(r.renewals + 1), ms(r.max_renewals),
  ms(r.max_hold), r.resource)
redis.call('HSET', TOK, tok, rec)
redis.call('ZADD', IDX, 'XX', exps, tok)
return { 'ok', rec, exp - NOW }
