--[[
  Sets one field of a pool's settings (its last error), only while the pool exists: a manager
  finishing a pass after `pool rm` must not write a removed pool back.

  KEYS[1] the pool's settings (<prefix>:pool:<pool>)

  ARGV[1] the field
  ARGV[2] its value

  Returns 1 when set, 0 when the pool is gone.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
