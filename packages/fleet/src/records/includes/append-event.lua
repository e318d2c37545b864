--[[
  append_event(e): appends a progress event to its job's stream and, when the job belongs to a
  batch, to the batch's stream (a terminal event counts toward the batch's end), and updates the
  job's record. flush_events(): writes the events gathered since the last flush to the all-events
  stream as ONE entry (fields `e`, json, `e`, json, ... in order), so a script run that appends many
  events costs one XADD there; call it once at the script's end (BatchedScript's epilogue).

  Every key comes from the caller (its own KEYS); nothing is derived here.
    e.job           the job's hash
    e.stream        the job's events stream
    e.fleet         the all-events stream
    e.batch_hash    the job's batch hash, or false when the job has no batch
    e.batch_stream  the job's batch events stream, or false
    e.limits        { stream_maxlen = <job stream MAXLEN ~>, ttl = <seconds a job's record and
                    streams live after its first and its terminal event>, all_maxlen = <all-events
                    stream MAXLEN ~> } (the caller passes them in ARGV: JOB_STREAM_MAXLEN,
                    JOB_TTL_SEC, ALL_EVENTS_MAXLEN in records/event-log.ts)
    e.json          the event as JSON (stored as-is)
    e.phase, e.percent, e.message, e.at   the record's new fields
    e.host          the host's id, or '' (left unchanged)
    e.err           the error as JSON, or '' (left unchanged)
    e.fields        optional: more of the record's fields (name, value, ...), written in the same HSET
    e.no_record     optional: true to leave the record alone, its TTL too (a script that appends
                    another event for the job at once, in the same run, writes the record with that
                    one and sets its TTL itself)

  Returns the id of the entry in the job's stream.

  append_one(job, stream, fleet, batch_hash, batch_stream, stream_maxlen, ttl, all_maxlen, json, phase,
  percent, message, at, host, err, fields, no_record) is the same with e's fields as arguments, in
  that order (no table made per event).
]]
local fleet_stream, fleet_maxlen, fleet_events = nil, nil, {}

-- append_event's work with its fields as arguments (no table made per event: the append script
-- calls it for every event it is given). `fields` and `no_record` as e.fields and e.no_record.
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

local function append_event(e)
  return append_one(e.job, e.stream, e.fleet, e.batch_hash, e.batch_stream, e.limits.stream_maxlen, e.limits.ttl,
    e.limits.all_maxlen, e.json, e.phase, e.percent, e.message, e.at, e.host, e.err, e.fields, e.no_record)
end

local function flush_events()
  if fleet_stream == nil then return end
  redis.call('XADD', fleet_stream, 'MAXLEN', '~', fleet_maxlen, '*', unpack(fleet_events))
  fleet_stream, fleet_maxlen, fleet_events = nil, nil, {}
end
