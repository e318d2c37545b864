--[[
  Claims a ready VM of a pool: in this one step it leaves the ready set, joins the claimed hash,
  gets its lease (hash + expiry set), and the claim's time is recorded (for `targetReady: auto`);
  the pools channel is told, so the manager refills at once. Two claims never get the same VM.
  A VM of the current template version is preferred (the oldest ready first), then any.

  KEYS[1] the pool's ready VMs, by readyAt (<prefix>:pool:<pool>:ready)
  KEYS[2] the pool's claimed VMs, vm -> lease id (<prefix>:pool:<pool>:claimed)
  KEYS[3] the new lease's hash (<prefix>:lease:<id>)
  KEYS[4] every lease by expiry (<prefix>:leases)
  KEYS[5] the pool's recent claims (<prefix>:pool:<pool>:claims)
  KEYS[6] the pool's settings (<prefix>:pool:<pool>)

  ARGV[1] the prefix of the pool's per-VM keys (<prefix>:pool:<pool>:vm:); the VM's key is it and its name
  ARGV[2] the template version new VMs are made from
  ARGV[3] now (ms)
  ARGV[4] keep claim times this long (ms)
  ARGV[5] the pools channel (<prefix>:pools:changed)
  ARGV[6] the pool's name
  ARGV[7] the lease id
  ARGV[8] the lease's expiresAt (ms)
  ARGV[9..] the lease's other hash fields, as field, value pairs (without target)

  Returns {vm, host, addresses (JSON)}; {} when no VM is ready; -1 when the pool does not exist.
]]
if redis.call('EXISTS', KEYS[6]) == 0 then return -1 end
local ready = redis.call('ZRANGE', KEYS[1], 0, -1)
if #ready == 0 then return {} end
local vm = nil
for _, name in ipairs(ready) do
  if redis.call('HGET', ARGV[1] .. name, 'templateVersion') == ARGV[2] then
    vm = name
    break
  end
end
if vm == nil then vm = ready[1] end
redis.call('ZREM', KEYS[1], vm)
redis.call('HSET', KEYS[2], vm, ARGV[7])
local vmKey = ARGV[1] .. vm
redis.call('HSET', vmKey, 'leaseId', ARGV[7], 'claimedAt', ARGV[3])
local fields = {}
for i = 9, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[3], 'target', vm, unpack(fields))
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
local now = tonumber(ARGV[3])
redis.call('ZADD', KEYS[5], now, ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[4]))
redis.call('PUBLISH', ARGV[5], ARGV[6])
local v = redis.call('HMGET', vmKey, 'host', 'addresses')
return {vm, v[1] or '', v[2] or '[]'}
