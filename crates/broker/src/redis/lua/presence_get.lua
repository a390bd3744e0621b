-- Reads one channel's presence, dropping expired entries first.
--
-- KEYS[1] presence zset, KEYS[2] presence hash
-- Returns { client1, entry1, client2, entry2, ... }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  -- In slices: unpack has a stack limit.
  for i = 1, #expired, 1000 do
    redis.call('HDEL', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
  end
end
return redis.call('HGETALL', KEYS[2])
