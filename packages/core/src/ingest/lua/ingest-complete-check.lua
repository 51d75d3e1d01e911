-- Shared by CHECKPOINT and COMMIT: the round is complete when listing is done and every chunk committed.
-- Answers 1 again while the state is 'finalizing', so a caller that died before queueing the finalize job
-- (or whose add failed) queues it on its retry; the job id dedupes. 'queued' counts too: planning that
-- fails before the ingestion started (a model mismatch, storage refusing) must still reach a final state.
local function complete_check(rec)
  local v = redis.call('HMGET', rec, 'state', 'listingDone', 'planned', 'committed')
  if v[1] == 'finalizing' then return 1 end
  if v[2] == '1' and tonumber(v[4] or '0') >= tonumber(v[3] or '0') and (v[1] == 'running' or v[1] == 'cancelling' or v[1] == 'queued') then
    redis.call('HSET', rec, 'state', 'finalizing')
    return 1
  end
  return 0
end
