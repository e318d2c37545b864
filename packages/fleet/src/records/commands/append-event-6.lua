--[[
  Appends a job's progress event, unless the job already ended: a job's terminal event is its last.
  Run batched (BatchedScript: many calls in one script run; flush_events() is the epilogue).

  Input:
    KEYS[1] the job's hash
    KEYS[2] the job's events stream
    KEYS[3] the all-events stream
    KEYS[4] the job's batch hash      (any key, e.g. KEYS[1], when ARGV[3] is '')
    KEYS[5] the job's batch events stream (likewise)
    KEYS[6] the VM's hash             (any key when ARGV[7] is '')

    ARGV[1] the event as JSON (stored as-is; the record's fields come in ARGV[10..15])
    ARGV[2] '1': refuse when the job was asked to be cancelled; '0': do not check
    ARGV[3] the job's batch id as the caller knows it, '' for none or not known
    ARGV[4] the job stream's MAXLEN (~)
    ARGV[5] seconds a job's record and streams live after its first and its terminal event
    ARGV[6] the all-events stream's MAXLEN (~)
    ARGV[7] the VM's new state, '' to leave the VM alone; set (with its job, ARGV[8], and when
            given its addresses, ARGV[9], a JSON list) only if the VM is still recorded
    ARGV[8] the job id (for the VM's record)
    ARGV[9] the guest's addresses as a JSON list, '' for none
    ARGV[10..15] the event's phase, percent, message, at, host ('' for none) and error as JSON ('' for
            none): the record's new fields, as in ARGV[1] (passed apart so that no JSON is decoded)

  Output:
    the entry id in the job's stream
    false        the job already ended (nothing written)
    '!cancel'    ARGV[2] is '1' and the job was asked to be cancelled (nothing written)
    '!batch:<id>' the job's record names another batch than ARGV[3] (<id> is its batch, '' for
                 none): nothing written; call again with that batch's keys. The batch of a job is
                 fixed when it is created, so a caller that learned it can keep passing it.
]]
--- @include "../includes/append-event"

local j = redis.call('HMGET', KEYS[1], 'phase', 'cancelRequested', 'batch')
local phase = j[1]
if phase == 'done' or phase == 'failed' or phase == 'cancelled' then return false end
if ARGV[2] == '1' and j[2] == '1' then return '!cancel' end
local batch = j[3] or ''
if batch ~= ARGV[3] then return '!batch:' .. batch end
if ARGV[7] ~= '' and redis.call('EXISTS', KEYS[6]) == 1 then
  if ARGV[9] ~= '' then
    redis.call('HSET', KEYS[6], 'state', ARGV[7], 'jobId', ARGV[8], 'updatedAt', ARGV[13], 'addresses', ARGV[9])
  else
    redis.call('HSET', KEYS[6], 'state', ARGV[7], 'jobId', ARGV[8], 'updatedAt', ARGV[13])
  end
end
local bhash, bstream = false, false
if batch ~= '' then bhash, bstream = KEYS[4], KEYS[5] end
return append_one(KEYS[1], KEYS[2], KEYS[3], bhash, bstream, ARGV[4], ARGV[5], ARGV[6], ARGV[1], ARGV[10], ARGV[11],
  ARGV[12], ARGV[13], ARGV[14], ARGV[15], nil, false)
