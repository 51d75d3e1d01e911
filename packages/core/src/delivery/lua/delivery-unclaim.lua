-- {{REDRIVE_FIELD}} is replaced with the record field of that name when the script is loaded (delivery-queue.ts).
-- Undoes a redrive claim whose job could not be queued: only while the delivery is still pending.
local cur = redis.call('HGET', KEYS[1], 'delivery')
if not cur then return 0 end
local d = cjson.decode(cur)
if d.state ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'delivery', ARGV[1], '{{REDRIVE_FIELD}}', ARGV[2])
return 1
