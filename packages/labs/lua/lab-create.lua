--[[
  Records a new lab, unless its name is taken. A lab that is gone, or failed and rolled back, no
  longer holds its name: its keys are replaced.

  KEYS[1] the lab's hash (<prefix>:lab:<name>)
  KEYS[2] the lab's VMs (<prefix>:lab:<name>:vms)
  KEYS[3] the lab's event stream (<prefix>:lab:<name>:events)
  KEYS[4] every lab's name (<prefix>:labs)

  ARGV[1] name
  ARGV[2] the lab's fields as JSON (an object of strings)

  Returns 1 when recorded, 0 when the name is taken.
]]
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= false then
  local rolledBack = redis.call('HGET', KEYS[1], 'rolledBack')
  if not (state == 'gone' or (state == 'failed' and rolledBack == '1')) then
    return 0
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local fields = cjson.decode(ARGV[2])
local flat = {}
for k, v in pairs(fields) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('SADD', KEYS[4], ARGV[1])
return 1
