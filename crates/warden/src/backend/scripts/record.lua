-- Lease records live in the global hash TOK (token -> record), the resource name last:
-- kind \n client \n acquired_ms \n expires_ms \n ttl_ms \n fence \n renewals \n max_renewals(-1) \n max_hold_ms(0) \n resource
local function parse(rec)
  local kind, client, acq, exp, ttl, fence, ren, mren, mhold, res = string.match(rec,
    '^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
  if not kind then return nil end
  return { kind = kind, client = client, acq = tonumber(acq), exp = tonumber(exp), ttl = tonumber(ttl),
           fence = fence, renewals = tonumber(ren), max_renewals = tonumber(mren), max_hold = tonumber(mhold),
           resource = res }
end
-- Writes a record from its fields, every one a string (integers through ms()): concatenation of ready strings
-- costs the server a quarter of what string.format with %d's does.
local function record(kind, client, acq, exp, ttl, fence, renewals, max_renewals, max_hold, resource)
  return kind .. '\n' .. client .. '\n' .. acq .. '\n' .. exp .. '\n' .. ttl .. '\n' .. fence .. '\n' .. renewals
    .. '\n' .. max_renewals .. '\n' .. max_hold .. '\n' .. resource
end
-- The fields a release needs (kind, client, acquired, expires, resource): fewer captures than parse() on the
-- hottest path.
local function parse_brief(rec)
  local kind, client, acq, exp, res = string.match(rec,
    '^([^\n]*)\n([^\n]*)\n(%d+)\n(%d+)\n[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n(.*)$')
  if not kind then return nil end
  return kind, client, tonumber(acq), tonumber(exp), res
end
-- Integers go to redis.call and into records as strings formatted here: a Lua number handed to redis.call (or
-- tostring) is converted as a float, at about three times the cost.
local function ms(n) return string.format('%d', n) end
local function is_excl(kind) return kind == 'exclusive' or kind == 'write' end
local T = redis.call('TIME')
local NOW = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
