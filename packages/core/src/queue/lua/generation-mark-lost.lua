-- Adds the loss to the marker, only if it is still the one the caller read. KEYS[1] marker;
-- ARGV[1] the marker as read; ARGV[2] the new one. Returns the marker in force.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
