--[[
  Removes a pool's settings and takes every VM it holds, in one step: the caller then cancels the
  starting ones, destroys all of them and ends the claimed ones' leases. A manager that ticks
  meanwhile finds no pool (and destroys what still carries its label).

  KEYS[1] every pool's name (<prefix>:pools)
  KEYS[2] the pool's settings (<prefix>:pool:<pool>)
  KEYS[3] the pool's VMs being made, vm -> job id
  KEYS[4] the pool's ready VMs
  KEYS[5] the pool's claimed VMs, vm -> lease id
  KEYS[6] the pool's recent claims
  KEYS[7] the pool's create-to-ready durations

  ARGV[1] the prefix of the pool's per-VM keys (<prefix>:pool:<pool>:vm:)
  ARGV[2] the pools channel
  ARGV[3] the pool's name

  Returns {starting (flat vm, job id), ready (vm list), claimed (flat vm, lease id)}, or -1 when
  there is no such pool.
]]
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local starting = redis.call('HGETALL', KEYS[3])
local ready = redis.call('ZRANGE', KEYS[4], 0, -1)
local claimed = redis.call('HGETALL', KEYS[5])
for i = 1, #starting, 2 do redis.call('DEL', ARGV[1] .. starting[i]) end
for _, vm in ipairs(ready) do redis.call('DEL', ARGV[1] .. vm) end
for i = 1, #claimed, 2 do redis.call('DEL', ARGV[1] .. claimed[i]) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('SREM', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {starting, ready, claimed}
