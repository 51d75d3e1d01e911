-- Creates the record and takes the output's lock in one step (a lock whose holder's record is gone is
-- stale and taken over). KEYS: record, all, lock, holder's record (when the lock is held).
-- ARGV: id, lock ttl (s), record key prefix, then field/value pairs. Returns {'ok'} or {'locked', holder}.
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then
  if (not KEYS[4]) or KEYS[4] ~= ARGV[3] .. holder or redis.call('EXISTS', KEYS[4]) == 1 then
    return {'locked', holder}
  end
end
redis.call('SET', KEYS[3], ARGV[1], 'EX', tonumber(ARGV[2]))
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {'ok'}
