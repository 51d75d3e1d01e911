-- The planner starts (or resumes) a round-0 listing: plan fields are set once. KEYS: record.
-- ARGV: now, then field/value pairs. Returns the state.
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return 'missing' end
if redis.call('HEXISTS', KEYS[1], 'run') == 0 then
  for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if s == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'startedAt', ARGV[1], 'updatedAt', ARGV[1])
  return 'running'
end
return s
