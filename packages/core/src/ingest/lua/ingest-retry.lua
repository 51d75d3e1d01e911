-- Starts a retry round over the current failures. KEYS: record, failures, failinfo, snapshot, snapshot
-- info, lock, then keys to persist. ARGV: id, now, lock ttl, new round.
-- Returns {'ok', n} | {'state', s} | {'none'} | {'locked', holder}.
local st = redis.call('HMGET', KEYS[1], 'state', 'round')
if not st[1] then return {'missing'} end
if st[1] ~= 'completed' and st[1] ~= 'partially_failed' and st[1] ~= 'failed' then return {'state', st[1]} end
if tonumber(st[2] or '0') + 1 ~= tonumber(ARGV[4]) then return {'state', 'stale'} end
local n = redis.call('ZCARD', KEYS[2])
if n == 0 then return {'none'} end
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[1] then return {'locked', holder} end
redis.call('SET', KEYS[6], ARGV[1], 'EX', tonumber(ARGV[3]))
redis.call('RENAME', KEYS[2], KEYS[4])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('RENAME', KEYS[3], KEYS[5]) end
redis.call('HSET', KEYS[1], 'state', 'running', 'round', ARGV[4], 'listingDone', '0', 'planned', '0',
  'committed', '0', 'plannerParked', '0', 'ckptPage', '0', 'carried', '0', 'updatedAt', ARGV[2])
redis.call('HDEL', KEYS[1], 'finishedAt', 'checkpoint', 'error')
redis.call('HINCRBY', KEYS[1], 'failed', -n)
redis.call('HINCRBY', KEYS[1], 'queued', n)
for i = 7, #KEYS do redis.call('PERSIST', KEYS[i]) end
redis.call('PERSIST', KEYS[1])
return {'ok', n}
