-- One planner page, atomically: checkpoint, counters, carried failures, completion.
-- KEYS: record, failures, failinfo, retry snapshot, retry snapshot info, lock.
-- ARGV: round, page, checkpoint JSON, planned, d.discovered, d.skipped, d.queued, d.missing, listingDone,
--       now, carried JSON [[name, info], ...], error JSON or '', id, lock ttl, restore-from ('' or a
--       ZRANGEBYLEX min: a retry round that stops early puts the failures it did not queue back).
-- Returns {status, complete}; status 'conflict' when the page was already committed (a replay or a
-- second planner), 'stale' for another round, 'done' when listing had already finished.
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'state', 'round', 'ckptPage', 'listingDone')
if not st[1] then return {'missing', 0} end
if tonumber(st[2] or '0') ~= tonumber(ARGV[1]) then return {'stale', 0} end
if st[4] == '1' then return {'done', complete_check(rec)} end
if tonumber(ARGV[2]) ~= tonumber(st[3] or '0') + 1 then return {'conflict', 0} end
redis.call('HSET', rec, 'ckptPage', ARGV[2], 'checkpoint', ARGV[3], 'planned', ARGV[4], 'updatedAt', ARGV[10])
redis.call('HDEL', rec, 'retrying')
redis.call('HINCRBY', rec, 'discovered', tonumber(ARGV[5]))
redis.call('HINCRBY', rec, 'skipped', tonumber(ARGV[6]))
redis.call('HINCRBY', rec, 'queued', tonumber(ARGV[7]))
redis.call('HINCRBY', rec, 'missing', tonumber(ARGV[8]))
local carried = cjson.decode(ARGV[11])
local added = 0
local carriedAdded = 0
for _, f in ipairs(carried) do
  local n = redis.call('ZADD', KEYS[2], 0, f[1])
  added = added + n
  -- A third element 0: a failure of this run found while planning (a bad manifest line), not carried.
  if f[3] ~= 0 then carriedAdded = carriedAdded + n end
  redis.call('HSET', KEYS[3], f[1], f[2])
end
if added > 0 then redis.call('HINCRBY', rec, 'failed', added) end
if carriedAdded > 0 then redis.call('HINCRBY', rec, 'carried', carriedAdded) end
if ARGV[12] ~= '' then redis.call('HSET', rec, 'error', ARGV[12]) end
refresh_lock(KEYS[6], ARGV[13], ARGV[14])
if ARGV[15] ~= '' then
  local back = redis.call('ZRANGEBYLEX', KEYS[4], ARGV[15], '+')
  local n = 0
  for _, name in ipairs(back) do
    n = n + redis.call('ZADD', KEYS[2], 0, name)
    local info = redis.call('HGET', KEYS[5], name)
    if info then redis.call('HSET', KEYS[3], name, info) end
  end
  redis.call('HINCRBY', rec, 'failed', n)
  redis.call('HINCRBY', rec, 'queued', -n)
end
if ARGV[9] == '1' then
  redis.call('HSET', rec, 'listingDone', '1')
  redis.call('DEL', KEYS[4], KEYS[5])
end
return {'ok', complete_check(rec)}
