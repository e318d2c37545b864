--[[
  Moves a lab from one state to another (compare and set) and records the change on its event
  stream, in one step: two callers never both make the same move.

  KEYS[1] the lab's hash (<prefix>:lab:<name>)
  KEYS[2] the lab's event stream (<prefix>:lab:<name>:events)

  ARGV[1] the states it may move from, comma-separated (e.g. "creating,ready")
  ARGV[2] the new state
  ARGV[3] the event (JSON) to add to the stream
  ARGV[4] the stream's MAXLEN (approximate)
  ARGV[5..] field, value pairs to set with the move (e.g. reason, rolledBack, endedAt)

  Returns 1 when it moved, 0 when the lab is not in one of the given states (or not there).
]]
local state = redis.call('HGET', KEYS[1], 'state')
if state == false then return 0 end
local allowed = false
for from in string.gmatch(ARGV[1], '[^,]+') do
  if from == state then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
if #ARGV > 4 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'e', ARGV[3])
return 1
