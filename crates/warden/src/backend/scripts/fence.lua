-- Redlock fence read. KEYS: F. Returns the stored fence, or, when this node has none (never granted, or it
-- lost its data), the server clock in microseconds, so that T = max + 1 never goes back after data loss.
local stored = redis.call('HGET', KEYS[1], 'fence')
if stored then return stored end
local t = redis.call('TIME')
return string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
