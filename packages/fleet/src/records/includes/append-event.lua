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
]]
local fleet_stream, fleet_maxlen, fleet_events = nil, nil, {}

local function append_event(e)
  local id = redis.call('XADD', e.stream, 'MAXLEN', '~', e.limits.stream_maxlen, '*', 'e', e.json)
  fleet_stream = e.fleet
  fleet_maxlen = e.limits.all_maxlen
  fleet_events[#fleet_events + 1] = 'e'
  fleet_events[#fleet_events + 1] = e.json
  local terminal = e.phase == 'done' or e.phase == 'failed' or e.phase == 'cancelled'
  if e.batch_hash then
    redis.call('XADD', e.batch_stream, '*', 'e', e.json)
    if terminal then redis.call('HINCRBY', e.batch_hash, 'ended', 1) end
    redis.call('EXPIRE', e.batch_stream, e.limits.ttl)
  end
  if not e.no_record then
    local f = { 'phase', e.phase, 'percent', e.percent, 'message', e.message, 'updatedAt', e.at }
    if e.host ~= '' then f[#f + 1] = 'hostId'; f[#f + 1] = e.host end
    if e.err ~= '' then f[#f + 1] = 'error'; f[#f + 1] = e.err end
    if e.fields then for _, v in ipairs(e.fields) do f[#f + 1] = v end end
    redis.call('HSET', e.job, unpack(f))
  end
  if terminal or e.phase == 'queued' then
    if not e.no_record then redis.call('EXPIRE', e.job, e.limits.ttl) end
    redis.call('EXPIRE', e.stream, e.limits.ttl)
  end
  return id
end

local function flush_events()
  if fleet_stream == nil then return end
  redis.call('XADD', fleet_stream, 'MAXLEN', '~', fleet_maxlen, '*', unpack(fleet_events))
  fleet_stream, fleet_maxlen, fleet_events = nil, nil, {}
end
