-- A chunk's outcome, counted once (the committed bitmap), with its failures and a throughput sample.
-- KEYS: record, committed bitmap, written bitmap, failures, failinfo, throughput, lock.
-- ARGV: round, seq, blobs, done, bytes, written (0/1), cancelled (0/1), now, wake threshold,
--       failures JSON [[name, info], ...], throughput member, id, lock ttl.
-- Returns {status ('ok'|'dup'|'stale'|'missing'), complete, wake}.
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'state', 'round')
if not st[1] then return {'missing', 0, 0} end
if tonumber(st[2] or '0') ~= tonumber(ARGV[1]) then return {'stale', 0, 0} end
local status = 'dup'
if redis.call('SETBIT', KEYS[2], tonumber(ARGV[2]), 1) == 0 then
  status = 'ok'
  redis.call('HINCRBY', rec, 'committed', 1)
  local n = tonumber(ARGV[3])
  redis.call('HINCRBY', rec, 'queued', -n)
  if ARGV[7] == '1' then
    redis.call('HINCRBY', rec, 'cancelledBlobs', n)
  else
    local done = tonumber(ARGV[4])
    redis.call('HINCRBY', rec, 'done', done)
    redis.call('HINCRBY', rec, 'bytes', tonumber(ARGV[5]))
    local added = 0
    for _, f in ipairs(cjson.decode(ARGV[10])) do
      added = added + redis.call('ZADD', KEYS[4], 0, f[1])
      redis.call('HSET', KEYS[5], f[1], f[2])
    end
    if added > 0 then redis.call('HINCRBY', rec, 'failed', added) end
    if ARGV[6] == '1' then redis.call('SETBIT', KEYS[3], tonumber(ARGV[2]), 1) end
    if done > 0 then
      local now = tonumber(ARGV[8])
      redis.call('ZADD', KEYS[6], now, ARGV[11])
      redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - 120000)
    end
  end
  redis.call('HSET', rec, 'updatedAt', ARGV[8])
  redis.call('HDEL', rec, 'retrying')
  refresh_lock(KEYS[7], ARGV[12], ARGV[13])
end
local complete = complete_check(rec)
local wake = 0
local v = redis.call('HMGET', rec, 'plannerParked', 'planned', 'committed')
if v[1] == '1' and tonumber(v[2] or '0') - tonumber(v[3] or '0') <= tonumber(ARGV[9]) then
  redis.call('HSET', rec, 'plannerParked', '0')
  wake = 1
end
return {status, complete, wake}
