--[[
  A pool's VM became ready: it leaves the starting hash and joins the ready set with its record, in
  one step, only if it is still starting (a `pool rm` meanwhile took it: then nothing is written and
  the caller destroys it). The pools channel is told (a waiting claim takes it at once).

  KEYS[1] the pool's VMs being made, vm -> job id (<prefix>:pool:<pool>:starting)
  KEYS[2] the pool's ready VMs, by readyAt (<prefix>:pool:<pool>:ready)
  KEYS[3] the VM's record (<prefix>:pool:<pool>:vm:<vm>)
  KEYS[4] the pool's recent create-to-ready durations (<prefix>:pool:<pool>:make-times)

  ARGV[1] the VM's name
  ARGV[2] readyAt (ms)
  ARGV[3] create-to-ready (ms)
  ARGV[4] keep this many durations
  ARGV[5] the pools channel
  ARGV[6] the pool's name
  ARGV[7..] the VM record's fields, as field, value pairs

  Returns 1 when the VM is now ready, 0 when it was no longer starting.
]]
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local fields = {}
for i = 7, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[3], 'readyAt', ARGV[2], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('LPUSH', KEYS[4], ARGV[3])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
