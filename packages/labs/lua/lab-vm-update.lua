--[[
  Changes one VM's entry in a lab (compare and set on its JSON), and adds an event to the lab's
  stream when the change is made: two callers never both take the same step for a VM (announce its
  job's end, cancel its job, destroy it).

  KEYS[1] the lab's VMs (<prefix>:lab:<name>:vms)
  KEYS[2] the lab's event stream (<prefix>:lab:<name>:events)

  ARGV[1] the VM's name
  ARGV[2] its entry as the caller read it (JSON)
  ARGV[3] its new entry (JSON)
  ARGV[4] the event (JSON) to add, or '' for none
  ARGV[5] the stream's MAXLEN (approximate)

  Returns 1 when changed, 0 when the entry is no longer what the caller read.
]]
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[4])
end
return 1
