--[[
  A host's heartbeat: publishes its status (live for a TTL, and in the registry of every host),
  marks it up until now + TTL in the alive zset, and files it in its eligibility class's free-room
  zset (moving it out of its previous class's); the first host of a class is kept as the class's
  example in the classes hash (what placement judges eligibility on: hosts of a class are alike).

  KEYS: 1 the host's live status key, 2 the registry hash of every host, 3 placement hosts hash,
        4 alive zset, 5 the free-room zset of the host's class now, 6 that of the class the caller
        believes it had (any key when none), 7 the classes hash (class -> a status JSON of one of its hosts).
  ARGV: 1 host, 2 status JSON, 3 TTL ms, 4 class now, 5 class the caller believes it had ('' none),
        6 draining on its own ('1' | '0'), 7 now in ms ('' = Redis's clock).
  Returns {'ok'} | {'class', id}: the host was filed under class `id`: run again with it (nothing was written).
]]
--- @include "../includes/room"

local h = ARGV[1]
local stored = redis.call('HGET', KEYS[3], h .. '.class')
if stored and stored ~= ARGV[4] and stored ~= ARGV[5] then return { 'class', stored } end
if stored and stored ~= ARGV[4] then redis.call('ZREM', KEYS[6], h) end
local r = redis.call('HMGET', KEYS[3], h .. '.capMem', h .. '.mem')
redis.call('HSET', KEYS[3], h .. '.class', ARGV[4], h .. '.draining', ARGV[6])
redis.call('ZADD', KEYS[5], tonumber(r[1] or '0') - tonumber(r[2] or '0'), h)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[4], now_ms(ARGV[7]) + ttl, h)
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('HSET', KEYS[2], h, ARGV[2])
redis.call('HSETNX', KEYS[7], ARGV[4], ARGV[2])
return { 'ok' }
