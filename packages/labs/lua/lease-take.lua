--[[
  Takes one live lease out of the expiry set for a release, in one step: it moves to the reaping
  set, so the reaper cannot also take it as expired, yet a releaser that dies before it finishes
  leaves it there for the reaper to finish (as a retry, not a first expiry).

  KEYS[1] every lease by expiry (<prefix>:leases)
  KEYS[2] leases being reaped, by when they were taken (<prefix>:leases:reaping)

  ARGV[1] lease id
  ARGV[2] now (ms)

  Returns 1 when taken, 0 when the lease is not live: gone, taken by the reaper, or expired (its
  expiry is the reaper's to record).
]]
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score == false or tonumber(score) <= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
