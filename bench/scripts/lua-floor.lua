-- The least a fenced lock cycle with a lease record can cost inside a Redis script: what a batch call would be
-- if the record lived in the lock key's value, the lock id named its resource (no record index) and nothing
-- else were kept (no queue check, no statistics, no kinds). Not warden's script: a floor to measure against,
-- run by lua-floor.sh. ARGV: the batch header (prefix at 1, retain_ms at 4), then 'a' token ttl_ms client
-- resource (acquire: SET ... GET of the fence, SET NX PXAT of the record) and 'r' token resource (release:
-- GET, DEL) operations.
local PREFIX, RETAINS = ARGV[1], ARGV[4]
local T = redis.call('TIME')
local CLOCKS = T[1] .. string.sub('00000', #T[2]) .. T[2]
local NOWS = string.sub(CLOCKS, 1, -4)
local NOW = tonumber(NOWS)
local function ge(a, b) return #a > #b or (#a == #b and a >= b) end
local out = { NOW }
local i, n = 6, #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'a' then
    local tok, ttls, client, res = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    local L = PREFIX .. res
    local F = '{' .. string.sub(tok, 1, 3) .. '}\1f' .. L
    local exps = string.format('%d', NOW + tonumber(ttls))
    local fs = CLOCKS
    local old = redis.call('SET', F, fs, 'PX', RETAINS, 'GET')
    if old and ge(old, fs) then fs = string.format('%d', tonumber(old) + 1); redis.call('SET', F, fs, 'PX', RETAINS) end
    if redis.call('SET', L, tok .. '\n' .. client .. '\n' .. NOWS .. '\n' .. exps .. '\n' .. ttls .. '\n' .. fs, 'NX', 'PXAT', exps) then
      out[#out + 1] = fs
    else
      out[#out + 1] = 0
    end
    i = i + 5
  elseif op == 'r' then
    local tok, res = ARGV[i + 1], ARGV[i + 2]
    local L = PREFIX .. res
    local v = redis.call('GET', L)
    if v and string.sub(v, 1, #tok) == tok then
      redis.call('DEL', L)
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    i = i + 3
  end
end
return out
