--[[
  Sets the room a host offers VMs (written by its worker) and keeps its free-room score in step.
  Once, it moves the host's state from the layout before the placement index (per-host alloc and
  claims hashes, drain key) into the placement keys, so a running fleet keeps its claims.

  KEYS: 1 placement hosts hash, 2 placement claims hash, 3 drained set, 4 the free-room zset of the
        host's class as the caller believes it (any key when none), 5 legacy alloc hash,
        6 legacy claims hash, 7 legacy drain key.
  ARGV: 1 host, 2 memoryMiB, 3 vcpus, 4 diskGiB ('' leaves it as it is), 5 the class the caller believes ('' none).
  Returns {'ok'} | {'class', id}: the host's class is `id`: run again with it (nothing was written).
]]
--- @include "../includes/room"

local h = ARGV[1]
local ctx = { hosts = KEYS[1], claims = KEYS[2], keyOf = {} }
if ARGV[5] ~= '' then ctx.keyOf[ARGV[5]] = KEYS[4] end
local ok, key = class_key(ctx, h)
if not ok then return { 'class', key } end
if redis.call('EXISTS', KEYS[5]) == 1 then
  local a = redis.call('HMGET', KEYS[5], 'mem', 'vcpus', 'disk', 'capDisk')
  redis.call('HINCRBY', KEYS[1], h .. '.mem', tonumber(a[1] or '0'))
  redis.call('HINCRBY', KEYS[1], h .. '.vcpus', tonumber(a[2] or '0'))
  redis.call('HINCRBY', KEYS[1], h .. '.disk', tonumber(a[3] or '0'))
  if a[4] then redis.call('HSET', KEYS[1], h .. '.capDisk', a[4]) end
  local old = redis.call('HGETALL', KEYS[6])
  for i = 1, #old, 2 do
    local m, v, d = string.match(old[i + 1], '^(-?%d+):(-?%d+):?(-?%d*)$')
    redis.call('HSET', KEYS[2], old[i], h .. ':' .. (m or '0') .. ':' .. (v or '0') .. ':' .. ((d ~= '' and d) or '0'))
  end
  redis.call('DEL', KEYS[5], KEYS[6])
end
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('SADD', KEYS[3], h)
  redis.call('DEL', KEYS[7])
end
redis.call('HSET', KEYS[1], h .. '.capMem', ARGV[2], h .. '.capVcpus', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], h .. '.capDisk', ARGV[4]) end
if key then
  local m = tonumber(redis.call('HGET', KEYS[1], h .. '.mem') or '0')
  redis.call('ZADD', key, tonumber(ARGV[2]) - m, h)
end
return { 'ok' }
