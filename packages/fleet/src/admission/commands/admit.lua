--[[
  Admits a create in one atomic step: claims the VM's name fleet-wide (a name is free when unknown
  or its last create failed), checks the tenant's quota, picks the best host with room on live
  numbers (find_room, placement/includes/room.lua: a walk of the eligible classes' free-room
  indexes, a handful of hosts), and only when all of that holds writes everything: the room and
  quota claims, the VM's record, the job's record (one HSET) and its `queued` and `placed` events, and the
  job's entry in the pending set (taken out once the job is in its host's queue; see PendingJobs).
  Nothing is written otherwise. (The job's payload travels in the host's queue; the record holds
  what the API shows.) A name is one tenant's: the same spec asked again by the VM's own tenant (or,
  for an operator's VM, by an operator) is the same VM; anything else is a clash, and a tenant's
  clash learns nothing of the other VM (the host is given only to an operator).
  Run through BatchedScript (admissions of one event-loop turn run as one script).

  KEYS: 1 vm hash, 2 vms set, 3 job hash, 4 group hash, 5 usage hash, 6 usage per-VM hash (4-6: any
        key when unused), 7 pending jobs set, 8 job events stream, 9 all-events stream, 10 batch
        hash, 11 batch events stream (10-11: any key when the job has no batch), 12 placement hosts
        hash, 13 placement claims hash, 14 alive zset, 15 drained set, 16.. the free-room zsets of
        the classes in the request's `classes` (in that order).
  ARGV (the request, one value each: no JSON to decode):
        1 vm, 2 fingerprint, 3 memory MiB, 4 vCPUs, 5 disk GiB, 6 tenant ('' for an operator),
        7 job id, 8 now in ms (the pending set's score), 9 now as ISO time (the events' `at`),
        10 policy ('spread', 'pack', 'order'), 11 '1' when the VM is in an anti-affinity group,
        12-15 the tenant's quota: VMs, MiB, vCPUs, GiB (-1 for none; 12 '' for no quota at all),
        16 the walk's page size, 17 now in ms for liveness ('' for Redis's clock),
        18-20 the event limits (job stream MAXLEN, TTL in s, all-events MAXLEN), 21 batch id ('' none),
        22 how many of the classes are candidates (the first ones), then the counts of the lists that
        follow: 23 classes, 24 hosts (-1: no list, walk the classes), 25 hosts excluded, 26 the VM
        record's fields (name, value, ...), 27 the job record's fields, 28 the `placed` message's
        pieces (split where the host's id goes);
        29 the `queued` event's JSON, 30 its percent, 31 its message, 32 the `placed` event's percent;
        33.. the lists in that order, then the `placed` event's JSON split where the host's id goes.
  Returns {'claimed', host} | {'same', jobId, host, pending ('1'/'0')} | {'clash', host or ''} |
        {'quota', which} | {'noroom'} | {'class', id, host}: a write needs class `id`'s zset (the
        VM's stale claim is on a host of it): pass it too and run again (nothing was written).
]]
--- @include "../../placement/includes/room"
--- @include "../includes/quota"
--- @include "../../records/includes/append-event"

local vm, tenant, jobId, at = ARGV[1], ARGV[6], ARGV[7], ARGV[9]
local mem, vcpus, disk = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local nClasses, nHosts, nExclude = tonumber(ARGV[23]), tonumber(ARGV[24]), tonumber(ARGV[25])
local nVm, nJob, nMsg = tonumber(ARGV[26]), tonumber(ARGV[27]), tonumber(ARGV[28])
local classesFrom = 33
local hostsFrom = classesFrom + nClasses
local excludeFrom = hostsFrom + math.max(nHosts, 0)
local vmFrom = excludeFrom + nExclude
local jobFrom = vmFrom + nVm
local msgFrom = jobFrom + nJob
local jsonFrom = msgFrom + nMsg

local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'failed' then
  local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'jobId', 'hostId', 'tenant')
  local sameTenant = (r[4] or '') == tenant
  if sameTenant and r[1] == ARGV[2] and state ~= 'destroying' then
    local pending = '0'
    if redis.call('ZSCORE', KEYS[7], r[2] or '') then pending = '1' end
    return { 'same', r[2], r[3] or '', pending }
  end
  if tenant == '' then return { 'clash', r[3] or '' } end
  return { 'clash', '' }
end
local quota = ARGV[12] ~= ''
if quota then
  local over = quota_check(KEYS[5], KEYS[6], vm, mem, vcpus, tonumber(ARGV[12]), tonumber(ARGV[13]),
    tonumber(ARGV[14]), disk, tonumber(ARGV[15]))
  if over ~= 'ok' then return { 'quota', over } end
end
local ctx = { hosts = KEYS[12], claims = KEYS[13], alive = KEYS[14], drained = KEYS[15], keyOf = {},
  now = now_ms(ARGV[17]), page = tonumber(ARGV[16]) }
if ARGV[11] == '1' then ctx.group = KEYS[4] end
local req = { vm = vm, mem = mem, vcpus = vcpus, disk = disk, policy = ARGV[10], held = false,
  classes = {}, skip = {} }
local eligible = tonumber(ARGV[22])
for i = 1, nClasses do
  local c = ARGV[classesFrom + i - 1]
  ctx.keyOf[c] = KEYS[15 + i]
  if i <= eligible then req.classes[#req.classes + 1] = c end
end
if nHosts >= 0 then req.list = { unpack(ARGV, hostsFrom, hostsFrom + nHosts - 1) } end
for i = excludeFrom, vmFrom - 1 do req.skip[ARGV[i]] = true end
local host = find_room(ctx, req)
if not host then return { 'noroom' } end
local missing, of = missing_class(ctx, host, vm)
if missing then return { 'class', missing, of } end
take_room(ctx, host, req)
if quota then quota_take(KEYS[5], KEYS[6], vm, mem, vcpus, disk) end
-- A failed create's record goes (with any field this one does not set).
if state then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'hostId', host, unpack(ARGV, vmFrom, jobFrom - 1))
redis.call('SADD', KEYS[2], vm)
redis.call('ZADD', KEYS[7], ARGV[8], jobId)
local bhash, bstream = false, false
if ARGV[21] ~= '' then bhash = KEYS[10]; bstream = KEYS[11] end
append_one(KEYS[3], KEYS[8], KEYS[9], bhash, bstream, ARGV[18], ARGV[19], ARGV[20], ARGV[29],
  'queued', ARGV[30], ARGV[31], at, '', '', nil, true)
-- The job's record, written once (one HSET, not three): its own fields and the `placed` event's.
append_one(KEYS[3], KEYS[8], KEYS[9], bhash, bstream, ARGV[18], ARGV[19], ARGV[20],
  table.concat({ unpack(ARGV, jsonFrom, #ARGV) }, host), 'placed', ARGV[32],
  table.concat({ unpack(ARGV, msgFrom, jsonFrom - 1) }, host), at, host, '', { unpack(ARGV, jobFrom, msgFrom - 1) },
  false)
redis.call('EXPIRE', KEYS[3], ARGV[19])
return { 'claimed', host }
