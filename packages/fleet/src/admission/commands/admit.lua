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
  ARGV: 1 the request as JSON (see Admission.admit; `classes`: class ids, the first `eligible` of
        them the candidates; `exclude`: hosts left out; `page`: walk page size; `now`: ms, '' for
        Redis's clock), 2 the `queued` event's JSON, 3.. the `placed` event's JSON split around
        where the host's id goes.
  Returns {'claimed', host} | {'same', jobId, host, pending ('1'/'0')} | {'clash', host or ''} |
        {'quota', which} | {'noroom'} | {'class', id, host}: a write needs class `id`'s zset (the
        VM's stale claim is on a host of it): pass it too and run again (nothing was written).
]]
--- @include "../../placement/includes/room"
--- @include "../includes/quota"
--- @include "../../records/includes/append-event"

local a = cjson.decode(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'failed' then
  local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'jobId', 'hostId', 'tenant')
  local sameTenant = (r[4] or '') == a.tenant
  if sameTenant and r[1] == a.fingerprint and state ~= 'destroying' then
    local pending = '0'
    if redis.call('ZSCORE', KEYS[7], r[2] or '') then pending = '1' end
    return { 'same', r[2], r[3] or '', pending }
  end
  if a.tenant == '' then return { 'clash', r[3] or '' } end
  return { 'clash', '' }
end
local quota = a.quota
if quota then
  local over = quota_check(KEYS[5], KEYS[6], a.vm, a.mem, a.vcpus, quota.vms, quota.mem, quota.vcpus, a.disk, quota.disk)
  if over ~= 'ok' then return { 'quota', over } end
end
local ctx = { hosts = KEYS[12], claims = KEYS[13], alive = KEYS[14], drained = KEYS[15], keyOf = {},
  now = now_ms(a.now), page = a.page }
if a.grouped then ctx.group = KEYS[4] end
local req = { vm = a.vm, mem = a.mem, vcpus = a.vcpus, disk = a.disk, policy = a.policy, held = false,
  classes = {}, skip = {} }
for i, c in ipairs(a.classes) do
  ctx.keyOf[c] = KEYS[15 + i]
  if i <= a.eligible then req.classes[#req.classes + 1] = c end
end
if a.hosts then req.list = a.hosts end
for _, h in ipairs(a.exclude) do req.skip[h] = true end
local host = find_room(ctx, req)
if not host then return { 'noroom' } end
local missing, of = missing_class(ctx, host, a.vm)
if missing then return { 'class', missing, of } end
take_room(ctx, host, req)
if quota then quota_take(KEYS[5], KEYS[6], a.vm, a.mem, a.vcpus, a.disk) end
-- A failed create's record goes (with any field this one does not set).
if state then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'hostId', host, unpack(a.vmFields))
redis.call('SADD', KEYS[2], a.vm)
redis.call('ZADD', KEYS[7], a.atMs, a.jobId)
local bhash, bstream = false, false
if a.batch then bhash = KEYS[10]; bstream = KEYS[11] end
local e = { job = KEYS[3], stream = KEYS[8], fleet = KEYS[9], batch_hash = bhash, batch_stream = bstream,
  limits = a.limits, json = ARGV[2], phase = 'queued',
  percent = a.queued.percent, message = a.queued.message, at = a.at, host = '', err = '', no_record = true }
append_event(e)
-- The job's record, written once (one HSET, not three): its own fields and the `placed` event's.
e.no_record = false
e.fields = a.jobFields
local parts = {}
for i = 3, #ARGV do parts[#parts + 1] = ARGV[i] end
e.json = table.concat(parts, host)
e.phase = 'placed'
e.percent = a.placed.percent
e.message = table.concat(a.placed.messageParts, host)
e.host = host
append_event(e)
redis.call('EXPIRE', KEYS[3], a.limits.ttl)
return { 'claimed', host }
