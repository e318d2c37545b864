--[[
  Reserves a new VM's place among a pool's VMs being made, before its create is asked for: only
  while the pool exists (a `pool rm` since the manager read the pool leaves nothing to make).

  KEYS[1] the pool's settings (<prefix>:pool:<pool>)
  KEYS[2] the pool's VMs being made, vm -> job id or pending:<ms> (<prefix>:pool:<pool>:starting)
  KEYS[3] the VM's record (<prefix>:pool:<pool>:vm:<vm>)

  ARGV[1] the VM's name
  ARGV[2] its entry while its job id is not known yet (pending:<ms>)
  ARGV[3..] the VM record's fields, as field, value pairs

  Returns 1 when reserved, 0 when the pool is gone.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local fields = {}
for i = 3, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], unpack(fields))
return 1
