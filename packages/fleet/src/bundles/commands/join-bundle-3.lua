--[[
  Adds creates to a host's waiting bundle (see bundles/open-bundles.ts): appends them to the
  bundle's jobs, only while the bundle waits in its queue never started and has room, and its host
  has not been judged lost. Atomic with BullMQ's own scripts: a worker takes a bundle (wait ->
  active) and reads its data in one script, so a bundle gains jobs only before any worker has it.
  The host monitor marks a lost host (KEYS[3]) before it reads that host's waiting bundles to
  re-place their jobs and remove them: a join after the mark is refused, one before it is read.

  Input:
    KEYS[1] the host queue's wait list (BullMQ's `wait`)
    KEYS[2] the bundle's BullMQ job hash
    KEYS[3] the host's down marker (Keys.hostDown: set by the host monitor once the host is lost)
    ARGV[1] the bundle's BullMQ job id (`bundle-<jobs>-<uuid>`)
    ARGV[2] the most jobs a bundle carries (BUNDLE_MAX_JOBS)
    ARGV[3] how many jobs join
    ARGV[4] those jobs as JSON values joined with ',' (no brackets)

  Output:
    the bundle's job count with them (also kept in the job hash's field `vfJobs`; the id's count is
    the one it was added with); 0 when nothing was written: the bundle is no longer waiting (taken,
    delayed, ended, removed), was ever started, has no room for them, or its host was judged lost
]]

if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
local h = redis.call('HMGET', KEYS[2], 'data', 'ats', 'atm', 'vfJobs')
local data = h[1]
if not data then return 0 end
if (tonumber(h[2]) or 0) > 0 or (tonumber(h[3]) or 0) > 0 then return 0 end
local count = tonumber(h[4]) or tonumber(string.match(ARGV[1], '^bundle%-(%d+)%-'))
if not count then return 0 end
local n = count + tonumber(ARGV[3])
if n > tonumber(ARGV[2]) then return 0 end
-- The data is BullMQ's JSON of { jobs: [...] }: the new jobs go before its closing ']}'.
if string.sub(data, -2) ~= ']}' then return 0 end
redis.call('HSET', KEYS[2], 'data', string.sub(data, 1, -3) .. ',' .. ARGV[4] .. ']}', 'vfJobs', n)
return n
