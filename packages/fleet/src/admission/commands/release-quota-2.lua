--[[
  Gives a VM's quota back to its tenant, once.

  Input:
    KEYS[1] the tenant's usage hash (vms, mem, vcpus, disk)
    KEYS[2] the tenant's per-VM hash (vm -> "mem:vcpus[:disk]", as quota_take wrote it)
    ARGV[1] the VM's name

  Output:
    1 given back; 0 the VM held no quota (never admitted, or already given back): nothing changed
]]

local c = redis.call('HGET', KEYS[2], ARGV[1])
if not c then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local m, v, d = string.match(c, '^(-?%d+):(-?%d+):?(-?%d*)$')
-- 0 - x, not -x: Lua's -0 reaches Redis as "-0", which HINCRBY refuses (a VM held with no disk).
redis.call('HINCRBY', KEYS[1], 'vms', -1)
redis.call('HINCRBY', KEYS[1], 'mem', 0 - (tonumber(m) or 0))
redis.call('HINCRBY', KEYS[1], 'vcpus', 0 - (tonumber(v) or 0))
redis.call('HINCRBY', KEYS[1], 'disk', 0 - (tonumber(d) or 0))
return 1
