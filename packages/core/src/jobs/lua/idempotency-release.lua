-- Gives an Idempotency-Key claim up, only while it is still this job's. KEYS[1] claim;
-- ARGV[1] `<body hash>:<job id>`.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
