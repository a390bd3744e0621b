-- Removes one client's presence.
--
-- KEYS[1] presence zset, KEYS[2] presence hash; ARGV[1] client
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
