--[[
  A VM against its tenant's quota, for the admission script.
  quota_check(usage, perVm, vm, mem, vcpus, lv, lm, lc, disk, ld): 'ok', or the quota the VM would
    exceed ('vms', 'memoryMiB', 'vcpus', 'diskGiB'); a VM already counted is 'ok' (not counted twice).
  quota_take(usage, perVm, vm, mem, vcpus, disk): counts the VM (once).
    usage   the tenant's usage hash (vms, mem, vcpus, disk): a key the caller passed in KEYS
    perVm   the tenant's per-VM hash (vm -> "mem:vcpus[:disk]"): a key the caller passed in KEYS
    lv, lm, lc, ld  the limits (VMs, MiB, vCPUs, GiB); -1 for none
]]
local function quota_check(usage, perVm, vm, mem, vcpus, lv, lm, lc, disk, ld)
  if redis.call('HEXISTS', perVm, vm) == 1 then return 'ok' end
  local u = redis.call('HMGET', usage, 'vms', 'mem', 'vcpus', 'disk')
  if lv >= 0 and tonumber(u[1] or '0') + 1 > lv then return 'vms' end
  if lm >= 0 and tonumber(u[2] or '0') + mem > lm then return 'memoryMiB' end
  if lc >= 0 and tonumber(u[3] or '0') + vcpus > lc then return 'vcpus' end
  if ld >= 0 and tonumber(u[4] or '0') + disk > ld then return 'diskGiB' end
  return 'ok'
end

local function quota_take(usage, perVm, vm, mem, vcpus, disk)
  if redis.call('HEXISTS', perVm, vm) == 1 then return end
  redis.call('HINCRBY', usage, 'vms', 1)
  redis.call('HINCRBY', usage, 'mem', mem)
  redis.call('HINCRBY', usage, 'vcpus', vcpus)
  redis.call('HINCRBY', usage, 'disk', disk)
  local held = mem .. ':' .. vcpus
  if disk > 0 then held = held .. ':' .. disk end
  redis.call('HSET', perVm, vm, held)
end
