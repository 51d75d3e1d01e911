-- For each backlog entry, whether its job still waits or runs: its hash exists and it is not in the failed
-- set (failed jobs are kept for inspection). KEYS[1] backlog hash; ARGV[1] the queue's key prefix
-- (`<prefix>:<queue>:`, inside the deployment's hash tag). Returns the ids whose job is finished or gone.
local out = {}
local ids = redis.call('HKEYS', KEYS[1])
for _, id in ipairs(ids) do
  local jobKey = ARGV[1] .. id
  if redis.call('EXISTS', jobKey) == 0 or redis.call('ZSCORE', ARGV[1] .. 'failed', id) then
    table.insert(out, id)
  end
end
return out
