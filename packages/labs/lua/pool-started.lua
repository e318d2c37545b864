--[[
  Records the create job of a VM being made, only if the pool still holds it as starting (a
  `pool rm` meanwhile took it: then nothing is written and the caller destroys the VM).

  KEYS[1] the pool's VMs being made, vm -> job id or pending:<ms> (<prefix>:pool:<pool>:starting)

  ARGV[1] the VM's name
  ARGV[2] its create job's id

  Returns 1 when recorded, 0 when the VM is no longer starting.
]]
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
