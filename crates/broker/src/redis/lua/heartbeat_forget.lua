-- Deletes stale heartbeat entries, each only if it still holds the value the reader saw
-- (a node that beat again in between keeps its fresh entry).
--
-- KEYS[1] a heartbeat hash
-- ARGV field, value, field, value, …
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
