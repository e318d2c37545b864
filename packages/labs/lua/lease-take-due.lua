--[[
  Takes the leases that have expired, for the reaper: each moves from the expiry set to the
  reaping set in this one step, so two reapers never take the same lease. A lease taken by a
  reaper that died before it finished (taken longer than ARGV[3] ms ago) is taken again.

  KEYS[1] every lease by expiry (<prefix>:leases)
  KEYS[2] leases being reaped, by when they were taken (<prefix>:leases:reaping)

  ARGV[1] now (ms)
  ARGV[2] at most this many
  ARGV[3] retry after (ms)

  Returns {id, first (1 the first time this lease is taken, 0 a retry), ...}.
]]
local now = tonumber(ARGV[1])
local out = {}
local stuck = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(stuck) do
  redis.call('ZADD', KEYS[2], now, id)
  table.insert(out, id)
  table.insert(out, 0)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], now, id)
  table.insert(out, id)
  table.insert(out, 1)
end
return out
