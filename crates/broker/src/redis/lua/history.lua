-- Reads one channel's history and stream position.
--
-- KEYS[1] history stream, KEYS[2] meta hash
-- ARGV[1] an epoch to use if the channel has none yet
-- ARGV[2] meta ttl, ms (for a meta hash made here)
-- ARGV[3] only entries after this offset ('' : from the oldest kept)
-- ARGV[4] at most this many ('' : all)
-- ARGV[5] '1': the newest ones (returned newest first)
-- Returns { epoch, offset, id1, body1, id2, body2, ... }.
--
-- Entries expire one by one, oldest first: the expired ones at the front are trimmed
-- first (an unexpired entry in front keeps a later expired one, as the in-process broker
-- does), so what is read is exactly what is kept.
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

local function field(entry, name)
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end

-- Trim the expired front, a batch at a time.
while true do
  local batch = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
  local live = nil
  for _, entry in ipairs(batch) do
    if tonumber(field(entry, 'x') or '0') > now then
      live = entry[1]
      break
    end
  end
  if live ~= nil then
    if live ~= batch[1][1] then
      redis.call('XTRIM', KEYS[1], 'MINID', live)
    end
    break
  end
  if #batch < 100 then
    if #batch > 0 then redis.call('DEL', KEYS[1]) end
    break
  end
  -- Ids are '<offset>-0': everything up to the batch's last entry goes.
  local last = tonumber(string.match(batch[#batch][1], '^(%d+)'))
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', last + 1))
end

local entries
local count = ARGV[4]
if count == '0' then
  entries = {}
elseif ARGV[3] ~= '' then
  local from = string.format('%d-0', tonumber(ARGV[3]) + 1)
  entries = redis.call('XRANGE', KEYS[1], from, '+')
elseif count ~= '' and ARGV[5] == '1' then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', count)
elseif count ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', count)
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+')
end
local out = { epoch, offset }
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[1]
  out[#out + 1] = field(entry, 'd') or ''
end
return out
