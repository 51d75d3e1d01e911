-- Moves a job between states only from an allowed one, atomically with the fields that go with the move.
-- KEYS[1] record; ARGV[1] allowed states (comma-separated); ARGV[2] new state; ARGV[3..] field/value pairs.
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return 'missing' end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then ok = true end end
if not ok then return cur end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 'ok'
