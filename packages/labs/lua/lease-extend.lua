--[[
  Extends a live lease: it then ends ARGV[2] ms from now, never past its maxExpiresAt.

  KEYS[1] the lease's hash (<prefix>:lease:<id>)
  KEYS[2] every lease by expiry (<prefix>:leases)

  ARGV[1] lease id
  ARGV[2] now (ms)
  ARGV[3] by (ms)

  Returns the new expiresAt (ms), -1 when there is no such lease, -2 when it has already expired
  (the reaper has it, or will).
]]
local max = redis.call('HGET', KEYS[1], 'maxExpiresAt')
if max == false then return -1 end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if score == false or tonumber(score) <= tonumber(ARGV[2]) then return -2 end
local expires = math.min(tonumber(ARGV[2]) + tonumber(ARGV[3]), tonumber(max))
redis.call('HSET', KEYS[1], 'expiresAt', expires)
redis.call('ZADD', KEYS[2], expires, ARGV[1])
return expires
