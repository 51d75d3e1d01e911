-- finalizing -> a final state, releasing the output's lock and starting the expiry of every key.
-- KEYS: record, lock, then keys to expire. ARGV: state, round, now, ttl, id, then field/value pairs.
local st = redis.call('HMGET', KEYS[1], 'state', 'round')
if not st[1] then return 'missing' end
if st[1] ~= 'finalizing' then return st[1] end
if tonumber(st[2] or '0') ~= tonumber(ARGV[2]) then return 'stale' end
-- A cancel that arrived while finalizing wins: what was done is recorded, and the ingestion says cancelled.
local state = ARGV[1]
if redis.call('HGET', KEYS[1], 'cancelRequested') == '1' then state = 'cancelled' end
redis.call('HSET', KEYS[1], 'state', state, 'finishedAt', ARGV[3], 'updatedAt', ARGV[3], 'finalizedRound', ARGV[2])
redis.call('HDEL', KEYS[1], 'retrying')
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
for i = 3, #KEYS do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[4])) end
return 'ok'
