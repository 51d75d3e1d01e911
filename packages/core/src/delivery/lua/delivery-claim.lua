-- {{REDRIVE_FIELD}} is replaced with the record field of that name when the script is loaded (delivery-queue.ts).
-- Claims the record's delivery atomically with the checks that decide whether to queue.
-- KEYS[1] record. ARGV[1] 'first' | 'redrive'; first: ARGV[2] pending delivery JSON;
-- redrive: ARGV[2] url, ARGV[3] n, ARGV[4] delivery id.
-- Returns {status, previous delivery JSON, previous redrive count}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', '', '0'} end
local cur = redis.call('HGET', KEYS[1], 'delivery')
local redrives = redis.call('HGET', KEYS[1], '{{REDRIVE_FIELD}}') or '0'
if ARGV[1] == 'first' then
  if cur then
    local ok, d = pcall(cjson.decode, cur)
    if ok and type(d) == 'table' and (d.state == 'delivered' or d.state == 'dead') then
      return {d.state, cur, redrives}
    end
    return {'pending', cur, redrives}
  end
  redis.call('HSET', KEYS[1], 'delivery', ARGV[2])
  return {'ok', '', redrives}
end
if not cur then return {'none', '', redrives} end
local d = cjson.decode(cur)
if d.state ~= 'dead' then return {d.state, cur, redrives} end
if tonumber(ARGV[3]) <= tonumber(redrives) then return {'stale', cur, redrives} end
d.state = 'pending'
d.url = ARGV[2]
d.deliveryId = ARGV[4]
d.deliveredAt = nil
redis.call('HSET', KEYS[1], 'delivery', cjson.encode(d), '{{REDRIVE_FIELD}}', ARGV[3])
return {'ok', cur, redrives}
