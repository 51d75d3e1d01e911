-- Keeps the output's lock while the ingestion works (it is taken for JOB_TTL_S at a time).
local function refresh_lock(lock, id, ttl)
  if redis.call('GET', lock) == id then redis.call('EXPIRE', lock, tonumber(ttl)) end
end
