-- Creates the data marker when missing; returns the marker in force. KEYS[1] marker; ARGV[1] proposal.
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
