--[[
  Takes or keeps the controller's lock: set when free, its expiry pushed on when this instance
  already holds it.

  KEYS[1] the lock (<prefix>:controller)

  ARGV[1] this instance's token
  ARGV[2] how long the lock lives (ms)

  Returns 1 when this instance holds the lock now, 0 when another does.
]]
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
