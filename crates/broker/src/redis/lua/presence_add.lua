-- Adds or refreshes one client's presence.
--
-- KEYS[1] presence zset (client -> expiry ms), KEYS[2] presence hash (client -> entry)
-- ARGV[1] client, ARGV[2] entry, ARGV[3] ttl ms
-- Expiry is Redis's clock, so nodes with skewed clocks agree. Both keys outlive their
-- longest entry: a channel whose nodes all died vanishes by itself.
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return 1
