-- Publishes into one channel: numbers the publication, keeps it in history, moves the
-- stream position and delivers it, all at once, so history, position and delivery agree.
--
-- KEYS[1] history stream (entry id "<offset>-0", fields x = expiry ms, d = body)
-- KEYS[2] meta hash (e = epoch, o = offset)
-- ARGV[1] PUB/SUB channel
-- ARGV[2] publication body
-- ARGV[3] history size (0: keep nothing, take no offset)
-- ARGV[4] history ttl, ms
-- ARGV[5] meta ttl, ms
-- ARGV[6] an epoch to use if the channel has none yet
-- Returns { offset, epoch } (the stream's top after this publication).
local size = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local epoch = redis.call('HGET', KEYS[2], 'e')
if size == 0 then
  -- No history: delivered only, position reported as it stands.
  local offset = redis.call('HGET', KEYS[2], 'o') or '0'
  epoch = epoch or ARGV[6]
  redis.call('PUBLISH', ARGV[1], 'p0:' .. epoch .. ':' .. ARGV[2])
  return { offset, epoch }
end
if not epoch then
  -- A new stream (first use, meta expired, or Redis lost its data): a new epoch, so a
  -- client holding a position from before learns it cannot be continued. A stream left
  -- over without its meta would carry offsets of the old epoch: drop it.
  epoch = ARGV[6]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch)
end
local offset = redis.call('HINCRBY', KEYS[2], 'o', 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = string.format('%d-0', offset)
redis.call('XADD', KEYS[1], 'MAXLEN', size, id, 'x', string.format('%d', now + ttl), 'd', ARGV[2])
-- The stream lives as long as its longest-lived entry.
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local meta_ttl = math.max(tonumber(ARGV[5]), ttl)
if redis.call('PTTL', KEYS[2]) < meta_ttl then
  redis.call('PEXPIRE', KEYS[2], meta_ttl)
end
redis.call('PUBLISH', ARGV[1], string.format('p%d:', offset) .. epoch .. ':' .. ARGV[2])
return { string.format('%d', offset), epoch }
