-- The job exists: the Idempotency-Key claim now lasts as long as its record, if it is still this job's.
-- KEYS[1] claim; ARGV[1] `<body hash>:<job id>`; ARGV[2] seconds.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
