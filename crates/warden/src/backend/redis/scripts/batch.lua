-- Group commit (after lib.lua, queue.lua, ops.lua): ARGV[6..] is a run of operations, each an opcode and its
-- arguments: 'A' acquire (13), 'R' release (2), 'N' renew (3), 'L' leave (3), 'F' fence read (2). Returns the
-- server clock (ms), then one reply per operation, in order (replies are kept small: converting them costs
-- Redis more than most commands). An operation that fails answers {'error', message} and the others go on; an
-- acquire that failed after taking its lock key gives it back, so no lock is left held by nobody.
local OPS = { A = { acquire, 13 }, R = { release, 2 }, N = { renew, 3 }, L = { leave, 3 }, F = { fence, 2 } }
local out = { NOW }
local i, n = 6, #ARGV
while i <= n do
  local op = OPS[ARGV[i]]
  if not op then return redis.error_reply('unknown operation ' .. tostring(ARGV[i])) end
  local ok, res = pcall(op[1], i + 1)
  if not ok then
    if ARGV[i] == 'A' then
      local L = PREFIX .. ARGV[i + 9]
      local v = redis.pcall('GET', L)
      if v == ARGV[i + 1] or v == ARGV[i + 1] .. '+' then redis.call('DEL', L) end
    end
    if type(res) == 'table' then res = res.err or 'error' end
    res = { 'error', tostring(res) }
  end
  if type(res) == 'table' and res.err then res = { 'error', res.err } end
  out[#out + 1] = res
  i = i + 1 + op[2]
end
return out
