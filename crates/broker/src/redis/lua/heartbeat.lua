-- Writes one node's heartbeat, stamped with Redis's clock (so nodes with skewed clocks
-- agree on who is alive).
--
-- KEYS[1] nodes hash, KEYS[2 .. 1+n] the hashes of the n projects the node serves,
-- KEYS[2+n ..] the hashes of projects it no longer serves
-- ARGV[1] ttl ms, ARGV[2] the node's field, ARGV[3] n, ARGV[4] its identity (a JSON
-- object without `at` and without its closing brace), ARGV[5 .. 4+n] each project's
-- counts (`:<clients>:<users>:<channels>:<subs>`)
local ttl = tonumber(ARGV[1])
local field = ARGV[2]
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], field, ARGV[4] .. ',"at":' .. now .. '}')
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 1, n do
  redis.call('HSET', KEYS[1 + i], field, now .. ARGV[4 + i])
  redis.call('PEXPIRE', KEYS[1 + i], ttl)
end
for i = 2 + n, #KEYS do
  redis.call('HDEL', KEYS[i], field)
end
return 1
