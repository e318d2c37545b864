--[[
  Takes a ready VM out of its pool for good (it is stale, or a resume of it failed): in one step, so
  a claim cannot get a VM being retired. Only a VM still in the ready set is taken.

  KEYS[1] the pool's ready VMs (<prefix>:pool:<pool>:ready)
  KEYS[2] the VM's record (<prefix>:pool:<pool>:vm:<vm>)

  ARGV[1] the VM's name

  Returns 1 when it was taken (the caller destroys it), 0 when it was not ready (claimed meanwhile).
]]
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
