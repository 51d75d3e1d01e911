-- A permanent failure found while the ingestion runs (the output container is gone): it stops as a
-- cancel does, and ends 'failed' with the error. KEYS: record. ARGV: now, error JSON. Returns the state.
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return 'missing' end
if s == 'queued' or s == 'running' or s == 'cancelling' or s == 'finalizing' then
  if redis.call('HEXISTS', KEYS[1], 'error') == 0 then redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
  if s == 'queued' or s == 'running' then redis.call('HSET', KEYS[1], 'state', 'cancelling') end
  redis.call('HSET', KEYS[1], 'updatedAt', ARGV[1])
end
return s
