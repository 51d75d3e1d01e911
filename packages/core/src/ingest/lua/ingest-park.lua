-- Parks the planner when too many chunks wait. KEYS: record. ARGV: max queued chunks. Returns 1 if parked.
local v = redis.call('HMGET', KEYS[1], 'planned', 'committed')
if tonumber(v[1] or '0') - tonumber(v[2] or '0') > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'plannerParked', '1')
  return 1
end
return 0
