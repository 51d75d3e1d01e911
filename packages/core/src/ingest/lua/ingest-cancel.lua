-- Cancel works in every state that is not final. queued/running -> cancelling (the planner stops, chunks
-- not started are dropped); cancelling and finalizing keep their state and only note the request: FINISH
-- then ends the ingestion 'cancelled'. KEYS: record. ARGV: now. Returns {'ok'} or {state}.
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return {'missing'} end
if s == 'queued' or s == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelling', 'cancelRequested', '1', 'updatedAt', ARGV[1])
  return {'ok'}
end
if s == 'cancelling' or s == 'finalizing' then
  redis.call('HSET', KEYS[1], 'cancelRequested', '1', 'updatedAt', ARGV[1])
  return {'ok'}
end
return {s}
