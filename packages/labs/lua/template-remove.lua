--[[
  Removes a template unless a pool makes VMs from it, in one step (so a pool made meanwhile is
  never left naming a removed template).

  KEYS[1] the template's hash (<prefix>:template:<name>)
  KEYS[2] every template's name (<prefix>:templates)
  KEYS[3] every pool's name (<prefix>:pools)
  KEYS[4..] each pool's hash (<prefix>:pool:<pool>), for the pools named in ARGV[3..], same order

  ARGV[1] the template's name
  ARGV[2] the caller's tenant ('' for an operator, who may remove any template)
  ARGV[3..] every pool's name, as the caller read KEYS[3]

  Returns {1} removed; {-1} no such template (or another tenant's); {-2, pool, ...} the pools that
  make VMs from it; {-3} a shared template (no tenant) and a tenant caller; {0} the pools changed
  since the caller read them (read them again and retry).
]]
local owner = redis.call('HGET', KEYS[1], 'tenant')
if owner == false then return {-1} end
if ARGV[2] ~= '' and owner ~= ARGV[2] then
  if owner == '' then return {-3} end
  return {-1}
end
local pools = #ARGV - 2
if redis.call('SCARD', KEYS[3]) ~= pools then return {0} end
local users = {-2}
for i = 1, pools do
  if redis.call('SISMEMBER', KEYS[3], ARGV[i + 2]) == 0 then return {0} end
  if redis.call('HGET', KEYS[i + 3], 'template') == ARGV[1] then table.insert(users, ARGV[i + 2]) end
end
if #users > 1 then return users end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return {1}
