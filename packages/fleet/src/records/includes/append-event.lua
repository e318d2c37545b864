--[[
  append_one(job, stream, fleet, batch_hash, batch_stream, stream_maxlen, ttl, all_maxlen, json, phase,
  percent, message, at, host, err, fields, no_record): appends a progress event to its job's stream
  and, when the job belongs to a batch, to the batch's stream (a terminal event counts toward the
  batch's end), and updates the job's record. Arguments, not a table: none is made per event.
  flush_events(): writes the events gathered since the last flush to the all-events stream as ONE
  entry (fields `e`, json, `e`, json, ... in order), so a script run that appends many events costs
  one XADD there; call it once at the script's end (BatchedScript's epilogue).

  Every key comes from the caller (its own KEYS); nothing is derived here.
    job             the job's hash
    stream          the job's events stream
    fleet           the all-events stream
    batch_hash      the job's batch hash, or false when the job has no batch
    batch_stream    the job's batch events stream, or false
    stream_maxlen, ttl, all_maxlen   the job stream's MAXLEN (~), the seconds a job's record and
                    streams live after its first and its terminal event, the all-events stream's
                    MAXLEN (~); the callers pass them in ARGV (LIMIT_ARGS in records/event-log.ts)
    json            the event as JSON (stored as-is)
    phase, percent, message, at   the record's new fields
    host            the host's id, or '' (left unchanged)
    err             the error as JSON, or '' (left unchanged)
    fields          optional: more of the record's fields (name, value, ...), written in the same HSET
    no_record       optional: true to leave the record alone, its TTL too (a script that appends
                    another event for the job at once, in the same run, writes the record with that
                    one and sets its TTL itself)

  Returns the id of the entry in the job's stream.
]]
local fleet_stream, fleet_maxlen, fleet_events = nil, nil, {}

local function append_one(job, stream, fleet, batch_hash, batch_stream, stream_maxlen, ttl, all_maxlen, json,
                          phase, percent, message, at, host, err, fields, no_record)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', stream_maxlen, '*', 'e', json)
  fleet_stream = fleet
  fleet_maxlen = all_maxlen
  local n = #fleet_events
  fleet_events[n + 1] = 'e'
  fleet_events[n + 2] = json
  local terminal = phase == 'done' or phase == 'failed' or phase == 'cancelled'
  if batch_hash then
    redis.call('XADD', batch_stream, '*', 'e', json)
    if terminal then redis.call('HINCRBY', batch_hash, 'ended', 1) end
    redis.call('EXPIRE', batch_stream, ttl)
  end
  if not no_record then
    if host == '' and err == '' and not fields then
      redis.call('HSET', job, 'phase', phase, 'percent', percent, 'message', message, 'updatedAt', at)
    else
      local f = { 'phase', phase, 'percent', percent, 'message', message, 'updatedAt', at }
      if host ~= '' then f[#f + 1] = 'hostId'; f[#f + 1] = host end
      if err ~= '' then f[#f + 1] = 'error'; f[#f + 1] = err end
      if fields then for _, v in ipairs(fields) do f[#f + 1] = v end end
      redis.call('HSET', job, unpack(f))
    end
  end
  if terminal or phase == 'queued' then
    if not no_record then redis.call('EXPIRE', job, ttl) end
    redis.call('EXPIRE', stream, ttl)
  end
  return id
end

local function flush_events()
  if fleet_stream == nil then return end
  redis.call('XADD', fleet_stream, 'MAXLEN', '~', fleet_maxlen, '*', unpack(fleet_events))
  fleet_stream, fleet_maxlen, fleet_events = nil, nil, {}
end
