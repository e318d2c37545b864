--[[
  Stores a template, making a new version only when its spec changed.

  KEYS[1] the template's hash (<prefix>:template:<name>)
  KEYS[2] the set of every template's name (<prefix>:templates)

  ARGV[1] name
  ARGV[2] spec (canonical JSON: equal specs are equal strings)
  ARGV[3] tenant ('' for none)
  ARGV[4] now (ISO 8601)

  Returns {version, changed (1|0)}, or {-1, owner} when another tenant owns the name.
]]
local owner = redis.call('HGET', KEYS[1], 'tenant')
if owner ~= false and owner ~= ARGV[3] then
  return {-1, owner}
end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version > 0 and redis.call('HGET', KEYS[1], 'spec') == ARGV[2] then
  return {version, 0}
end
version = version + 1
if version == 1 then
  redis.call('HSET', KEYS[1], 'createdAt', ARGV[4])
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'version', version, 'spec', ARGV[2], 'tenant', ARGV[3], 'updatedAt', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
return {version, 1}
