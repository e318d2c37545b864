--[[
  Makes room for one more of a tenant's batches and records it, atomically: batches older than
  their TTL leave the tenant's set; while the set is full, its oldest batch that has ended (or is
  gone) is deleted (record, items, events); if it is still full, nothing more is written.
  A list of keys (no key count in the name): the batches that may be deleted are the set's, which
  only the script can read atomically, so the caller passes the keys of the ids it was told of
  (none at first); when the set is full and holds an id whose keys were not passed, the script
  writes nothing more and answers with the set's ids, and the caller calls again with their keys.

  Input:
    KEYS[1] the tenant's batch set (batch id -> created at, ms)
    KEYS[2] the new batch's hash
    KEYS[3 + 3(i-1)], KEYS[4 + 3(i-1)], KEYS[5 + 3(i-1)]  the hash, items list and events stream of
            the i-th batch of ARGV[7..6+n]
    ARGV[1] now (ms)
    ARGV[2] a batch's TTL (ms): older ones leave the set
    ARGV[3] the most batches the tenant may keep
    ARGV[4] the new batch's id
    ARGV[5] a batch's TTL (s), for the set and the new batch's hash
    ARGV[6] n, how many batches' keys are passed
    ARGV[7..6+n] those batches' ids
    ARGV[7+n..] the new batch hash's fields and values

  Output:
    1               recorded
    0               the set is full of batches that have not ended: the new one is not recorded
    { 'ids', ... }  the set is full and holds ids whose keys were not passed (all the set's ids,
                    oldest first): the new one is not recorded, nothing was deleted; call again
                    with their keys
]]

local set, now, max = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[3])
local n = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. (now - tonumber(ARGV[2])))
if redis.call('ZCARD', set) >= max then
  local ids = redis.call('ZRANGE', set, 0, -1)
  local passed = {}
  for i = 1, n do passed[ARGV[6 + i]] = 3 + 3 * (i - 1) end
  for _, id in ipairs(ids) do
    if passed[id] == nil then return { 'ids', unpack(ids) } end
  end
  for _, id in ipairs(ids) do
    local k = passed[id]
    local c = redis.call('HMGET', KEYS[k], 'total', 'ended')
    if c[1] == false or tonumber(c[2] or '0') >= tonumber(c[1]) then
      redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2])
      redis.call('ZREM', set, id)
      if redis.call('ZCARD', set) < max then break end
    end
  end
  if redis.call('ZCARD', set) >= max then return 0 end
end
redis.call('ZADD', set, now, ARGV[4])
redis.call('EXPIRE', set, tonumber(ARGV[5]))
local f = {}
for i = 7 + n, #ARGV do f[#f + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(f))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return 1
