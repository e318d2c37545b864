--[[
  Gives the controller's lock up, only when this instance holds it.

  KEYS[1] the lock (<prefix>:controller)

  ARGV[1] this instance's token

  Returns 1 when released, 0 when another instance holds it (or nobody).
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
