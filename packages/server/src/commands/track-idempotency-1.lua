--[[
  Records one stored idempotent answer of a tenant and trims the tenant's set to its limit: the
  oldest entries beyond it leave the set and are returned, so the caller deletes their answers
  (a caller that dies before that leaves them to expire with their TTL).

  KEYS[1] the tenant's stored answers, by time (<prefix>:idem-keys:<scope>)

  ARGV[1] the answer's key (a member of KEYS[1])
  ARGV[2] now (ms)
  ARGV[3] how many answers the tenant keeps
  ARGV[4] the set's TTL (s)

  Returns the answer keys dropped (oldest first), maybe none.
]]
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over <= 0 then return {} end
local dropped = redis.call('ZRANGE', KEYS[1], 0, over - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
return dropped
