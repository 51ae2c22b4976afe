-- Views and the sweep (after lib.lua and queue.lua). ARGV[6] = mode, then its arguments:
--   'resource' tag, resource -> {foreign(0/1), {token, record, held}..., '--', {waiter_id, info}...}
--   'lease'    token         -> {} | {token, record, held}
--   'sweep'    tags... -> {active, {kind, held_ms, resource}...}: marks the leases of these slots whose expiry
--              passed unreleased (reported once, to be counted as expiries) and drops their records retain_ms
--              later; active = leases live in these slots
--   'held'     client, tags... -> {token, record, held}... of the client's live leases in these slots
local mode = ARGV[6]
local out = {}

local function push_lease(tok, rec)
  rec = rec or redis.call('HGET', hkey(tok), tok)
  if not rec then return end
  local r = parse(rec)
  if not r then return end
  local live = string.byte(rec, 1) ~= 33 and r.exp >= NOW and holds(PREFIX .. r.resource, tok, is_excl(r.kind))
  out[#out + 1] = tok
  out[#out + 1] = live and rec or string.gsub(rec, '^!', '')
  out[#out + 1] = live and 1 or 0
end

if mode == 'resource' then
  local tag = ARGV[7]
  local L, _, Q, W = res_keys(tag, ARGV[8])
  local ty = redis.call('TYPE', L)['ok']
  local toks = {}
  if ty == 'string' then toks = { (string.gsub(redis.call('GET', L), '%+$', '')) }
  elseif ty == 'zset' then toks = redis.call('ZRANGEBYSCORE', L, NOWS, '+inf') end
  local foreign = 0
  if ty ~= 'none' and ty ~= 'zset' and ty ~= 'string' then foreign = 1 end
  if ty == 'string' and (string.sub(toks[1], 1, 3) ~= tag or redis.call('HEXISTS', hkey(toks[1]), toks[1]) == 0) then
    foreign = 1
    toks = {}
  end
  out[1] = foreign
  for _, tok in ipairs(toks) do push_lease(tok) end
  out[#out + 1] = '--'
  local q = queue_lib(L, Q, W)
  for _, id in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
    local w = q.waiter(id)
    if w and w.deadline >= NOW then
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGET', W, id)
    end
  end
elseif mode == 'lease' then
  push_lease(ARGV[7])
elseif mode == 'sweep' then
  local active = 0
  out[1] = 0
  for a = 7, #ARGV do
    local H = base(ARGV[a]) .. 'h' .. PREFIX
    local all = redis.call('HGETALL', H)
    for j = 1, #all, 2 do
      local tok, rec = all[j], all[j + 1]
      local r = parse(rec)
      if not r or r.exp + RETAIN < NOW then
        redis.call('HDEL', H, tok)
      elseif r.exp < NOW then
        if string.byte(rec, 1) ~= 33 then
          redis.call('HSET', H, tok, '!' .. rec)
          out[#out + 1] = r.kind
          out[#out + 1] = r.exp - r.acq
          out[#out + 1] = r.resource
        end
      else
        active = active + 1
      end
    end
  end
  out[1] = active
elseif mode == 'held' then
  local client = ARGV[7]
  for a = 8, #ARGV do
    local all = redis.call('HGETALL', base(ARGV[a]) .. 'h' .. PREFIX)
    for j = 1, #all, 2 do
      local r = parse(all[j + 1])
      if r and r.client == client and r.exp >= NOW then push_lease(all[j], all[j + 1]) end
    end
  end
else
  return redis.error_reply('unknown mode ' .. tostring(mode))
end
return out
