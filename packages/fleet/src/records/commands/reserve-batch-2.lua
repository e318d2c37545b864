--[[
  Makes room for one more of a tenant's batches and records it, atomically: batches older than
  their TTL leave the tenant's set; while the set is full, its oldest batch that has ended (or is
  gone) is deleted (record, items, events); if it is still full, nothing is written.

  Input:
    KEYS[1] the tenant's batch set (batch id -> created at, ms)
    KEYS[2] the new batch's hash
    ARGV[1] the batch keys' prefix: a batch's keys are <ARGV[1]><id>, <ARGV[1]><id>:items and
            <ARGV[1]><id>:events (Keys.batch, batchItems, batchEvents)
    ARGV[2] now (ms)
    ARGV[3] a batch's TTL (ms)
    ARGV[4] the most batches the tenant may keep
    ARGV[5] the new batch's id
    ARGV[6] a batch's TTL (s)
    ARGV[7..] the new batch hash's fields and values

  Output:
    1 recorded; 0 the tenant's set is full of batches that have not ended (nothing written)

  Exception to "every key in KEYS": the batches evicted are the set's, known only inside the script
  (the set changes between any read and this script), so their keys are built from ARGV[1] and the
  ids read from KEYS[1] (as BullMQ's own cleaning scripts do from a queue's prefix). Redis Cluster is
  not supported (see README).
]]

local set, now, max = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. (now - tonumber(ARGV[3])))
if redis.call('ZCARD', set) >= max then
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    local b = ARGV[1] .. id
    local c = redis.call('HMGET', b, 'total', 'ended')
    if c[1] == false or tonumber(c[2] or '0') >= tonumber(c[1]) then
      redis.call('DEL', b, b .. ':items', b .. ':events')
      redis.call('ZREM', set, id)
      if redis.call('ZCARD', set) < max then break end
    end
  end
  if redis.call('ZCARD', set) >= max then return 0 end
end
redis.call('ZADD', set, now, ARGV[5])
redis.call('EXPIRE', set, tonumber(ARGV[6]))
local f = {}
for i = 7, #ARGV do f[#f + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(f))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
return 1
