-- Sets one field of a hash only while the hash exists: a late writer must not resurrect an expired record
-- as a half-record. KEYS[1] hash; ARGV[1] field, ARGV[2] value. Returns 1.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
