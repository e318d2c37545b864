--[[
  Forgets a claimed VM (released, its lease expired, or its resume failed): it leaves the claimed
  hash, its record and its lease go, in one step; the pools channel is told (the manager refills).
  Safe to run twice.

  KEYS[1] the pool's claimed VMs, vm -> lease id (<prefix>:pool:<pool>:claimed)
  KEYS[2] the VM's record (<prefix>:pool:<pool>:vm:<vm>)
  KEYS[3] every lease by expiry (<prefix>:leases)
  KEYS[4] leases being reaped (<prefix>:leases:reaping)

  ARGV[1] the VM's name
  ARGV[2] the pools channel
  ARGV[3] the pool's name
  ARGV[4] the prefix of lease hashes (<prefix>:lease:)

  Returns the lease id it ended ('' when the VM was not claimed).
]]
local lease = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if lease == false then return '' end
redis.call('ZREM', KEYS[3], lease)
redis.call('ZREM', KEYS[4], lease)
redis.call('DEL', ARGV[4] .. lease)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return lease
