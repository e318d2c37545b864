--[[
  Adds creates to a host's waiting bundle (see bundles/open-bundles.ts): appends them to the
  bundle's jobs, only while the bundle waits in its queue never started and has room. Atomic with
  BullMQ's own scripts: a worker takes a bundle (wait -> active) and reads its data in one script, so
  a bundle gains jobs only before any worker has it.

  Input:
    KEYS[1] the host queue's wait list (BullMQ's `wait`)
    KEYS[2] the bundle's BullMQ job hash
    ARGV[1] the bundle's BullMQ job id (`bundle-<jobs>-<uuid>`)
    ARGV[2] the most jobs a bundle carries (BUNDLE_MAX_JOBS)
    ARGV[3] how many jobs join
    ARGV[4] those jobs as JSON values joined with ',' (no brackets)

  Output:
    the bundle's job count with them (also kept in the job hash's field `vfJobs`; the id's count is
    the one it was added with); 0 when nothing was written: the bundle is no longer waiting (taken,
    delayed, ended, removed), was ever started, or has no room for them
]]

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
