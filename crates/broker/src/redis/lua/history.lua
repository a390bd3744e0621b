-- Reads one channel's history and stream position.
--
-- KEYS[1] history stream, KEYS[2] meta hash
-- ARGV[1] an epoch to use if the channel has none yet
-- ARGV[2] meta ttl, ms (for a meta hash made here)
-- Returns { epoch, offset, id1, body1, id2, body2, ... }, oldest first.
--
-- Entries expire one by one, oldest first: the expired ones at the front are trimmed
-- (an unexpired entry in front keeps a later expired one, as the in-process broker does).
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  -- Fix the stream's epoch now, so a subscriber that takes this position and comes back
  -- before the first publication finds the same epoch.
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
local offset = redis.call('HGET', KEYS[2], 'o') or '0'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
local out = { epoch, offset }
local first = nil
for i, entry in ipairs(entries) do
  local fields = entry[2]
  local expires, body = 0, ''
  for j = 1, #fields, 2 do
    if fields[j] == 'x' then expires = tonumber(fields[j + 1]) end
    if fields[j] == 'd' then body = fields[j + 1] end
  end
  if first == nil and expires > now then first = i end
  if first ~= nil then
    out[#out + 1] = entry[1]
    out[#out + 1] = body
  end
end
if first == nil and #entries > 0 then
  redis.call('DEL', KEYS[1])
elseif first ~= nil and first > 1 then
  redis.call('XTRIM', KEYS[1], 'MINID', entries[first][1])
end
return out
