-- Room on hosts, over the placement keys (see Keys: placementHosts, placementClaims, placementFree,
-- placementAlive, placementDrained). Every key comes from the caller, in a context table `ctx`:
--   ctx.hosts    hash: <host>.capMem/.capVcpus/.capDisk/.mem/.vcpus/.disk/.class/.draining
--   ctx.claims   hash: vm -> "<host>:<mem>:<vcpus>:<disk>"
--   ctx.alive    zset: host -> heartbeat expiry (ms); up while the score > ctx.now
--   ctx.drained  set of drained hosts
--   ctx.group    hash vm -> host of the request's anti-affinity group, or nil
--   ctx.keyOf    class id -> its free-room zset key (host -> capMem - mem), for the classes passed
--   ctx.now      ms since epoch; ctx.page: how many hosts a walk reads at a time
-- The policy (the TypeScript model is placement/policy.ts, pickHost; keep them equal): among the
-- candidates that fit (memory, vCPUs, disk when the host publishes a disk capacity), are up, not
-- drained and not draining, the fewest VMs of the group first, then 'spread': most free memory,
-- 'pack': least free memory; then the smallest id (byte order). Candidates
-- are the hosts of the eligible classes (walked in the class zsets in policy order, so a create
-- reads a handful of hosts), or, in list mode, the hosts given, where ties go to the earlier one
-- ('order': the first that fits).

-- Byte order of two host ids (Lua's `<` follows the server's locale).
local function id_lt(a, b)
  local la, lb = #a, #b
  for i = 1, math.min(la, lb) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return la < lb
end

-- A claim's "<host>:<mem>:<vcpus>:<disk>".
local function parse_claim(c)
  local h, m, v, d = string.match(c, '^(.*):(-?%d+):(-?%d+):(-?%d+)$')
  return h, tonumber(m) or 0, tonumber(v) or 0, tonumber(d) or 0
end

-- What one call (one ctx) read of hosts' classes and capacities and VMs' claims, so that find_room,
-- missing_class and take_room do not read them again: ctx.classOf (host -> class or false),
-- ctx.capMemOf (host -> capMem as read), ctx.claimOf (vm -> claim or false), kept in step with this
-- file's own writes of claims (no script writes a class or a capacity after reading it through a ctx).
local function remember(ctx, field, k, v)
  local m = ctx[field]
  if not m then m = {}; ctx[field] = m end
  m[k] = v
  return v
end

local function claim_of(ctx, vm)
  local c = ctx.claimOf and ctx.claimOf[vm]
  if c == nil then c = remember(ctx, 'claimOf', vm, redis.call('HGET', ctx.claims, vm)) end
  return c
end

local function host_state(ctx, h)
  local r = redis.call('HMGET', ctx.hosts, h .. '.capMem', h .. '.capVcpus', h .. '.capDisk', h .. '.mem',
    h .. '.vcpus', h .. '.disk', h .. '.class', h .. '.draining')
  remember(ctx, 'classOf', h, r[7] or false)
  remember(ctx, 'capMemOf', h, r[1] or false)
  local st = {
    capMem = tonumber(r[1] or '0'), capVcpus = tonumber(r[2] or '0'),
    capDisk = r[3] and tonumber(r[3]) or nil,
    mem = tonumber(r[4] or '0'), vcpus = tonumber(r[5] or '0'), disk = tonumber(r[6] or '0'),
    class = r[7] or nil, draining = r[8] == '1',
  }
  -- What add_room needs to write the new numbers at once (kept in step by add_room itself).
  remember(ctx, 'usedOf', h, { mem = st.mem, vcpus = st.vcpus, disk = st.disk })
  return st
end

local function fits(st, req)
  return st.mem + req.mem <= st.capMem and st.vcpus + req.vcpus <= st.capVcpus and
    (st.capDisk == nil or st.disk + req.disk <= st.capDisk)
end

-- Fits, is up, not drained, not draining.
local function usable(ctx, st, h, req)
  if st.draining or not fits(st, req) then return false end
  local until_ = redis.call('ZSCORE', ctx.alive, h)
  if not until_ or tonumber(until_) <= ctx.now then return false end
  return redis.call('SISMEMBER', ctx.drained, h) == 0
end

-- Is (freeA, idA, posA) better than (freeB, idB, posB)? pos: the place in a given list (list mode).
local function better(policy, fa, ia, pa, fb, ib, pb)
  if policy ~= 'order' then
    if fa ~= fb then
      if policy == 'pack' then return fa < fb end
      return fa > fb
    end
  end
  if pa ~= pb then return pa < pb end
  return id_lt(ia, ib)
end

-- `h`'s state if it is a usable candidate (not in the group, not skipped), else false. `seen` (host
-- -> its state, or false when not usable) keeps what one walk of a class read, so spread's walk of
-- the ties does not read a host again (nothing is written in between).
local function usable_state(ctx, req, counts, seen, h)
  if (counts[h] or 0) ~= 0 or req.skip[h] then return false end
  local st = seen[h]
  if st == nil then
    st = host_state(ctx, h)
    if not usable(ctx, st, h, req) then st = false end
    seen[h] = st
  end
  return st
end

-- The first usable host of `key` read by `range(offset, count)`: one host first (most often it is
-- usable: no more are read), then a page at a time.
local function first_usable(ctx, req, counts, range, seen)
  local offset, count = 0, 1
  while true do
    local ids = range(offset, count)
    for _, h in ipairs(ids) do
      local st = usable_state(ctx, req, counts, seen, h)
      if st then return h, st end
    end
    if #ids < count then return nil end
    offset = offset + count
    count = ctx.page
  end
end

-- One class's best host in policy order: 'pack' walks up from the least free memory that fits;
-- 'spread' walks down from the most, a block of equal free memory at a time, and takes the block's
-- smallest usable id. (Sorted sets order equal scores by member, descending in a reverse walk: a
-- block that ends within the page is read from its end, its smallest id, so a fleet of equal hosts
-- reads one host; a block that runs past the page is walked again upward from its smallest id.)
local function walk_class(ctx, key, req, counts)
  local seen = {}
  if req.policy == 'pack' then
    return first_usable(ctx, req, counts, function(offset, count)
      return redis.call('ZRANGEBYSCORE', key, req.mem, '+inf', 'LIMIT', offset, count)
    end, seen)
  end
  local offset = 0
  while true do
    local r = redis.call('ZREVRANGEBYSCORE', key, '+inf', req.mem, 'WITHSCORES', 'LIMIT', offset, ctx.page)
    local n = #r / 2
    local i, nextOffset = 1, offset + ctx.page
    while i <= n do
      local free = r[2 * i]
      local last = i
      while last < n and r[2 * last + 2] == free do last = last + 1 end
      if last == n and n == ctx.page then
        local h, st = first_usable(ctx, req, counts, function(o, count)
          return redis.call('ZRANGEBYSCORE', key, free, free, 'LIMIT', o, count)
        end, seen)
        if h then return h, st end
        -- No usable host in the block: the walk goes on below it.
        nextOffset = offset + i - 1 + redis.call('ZCOUNT', key, free, free)
        break
      end
      for k = last, i, -1 do
        local hk = r[2 * k - 1]
        local sk = usable_state(ctx, req, counts, seen, hk)
        if sk then return hk, sk end
      end
      i = last + 1
    end
    if n < ctx.page then return nil end
    offset = nextOffset
  end
end

-- The VMs of the request's group on each host.
local function group_counts(ctx)
  local counts = {}
  if ctx.group then
    for _, h in ipairs(redis.call('HVALS', ctx.group)) do counts[h] = (counts[h] or 0) + 1 end
  end
  return counts
end

-- The best host for `req`, or nil. req: vm, mem, vcpus, disk, policy, held (a VM holding a claim
-- on a candidate keeps it), and either classes (eligible class ids, their keys in ctx.keyOf) with
-- skip (set of hosts left out), or list (host ids in order). Returns host, state (nil state: held).
local function find_room(ctx, req)
  -- 'order' ranks only a given list; over classes it is 'spread'.
  if not req.list and req.policy == 'order' then req.policy = 'spread' end
  local counts = group_counts(ctx)
  local eligible, pos = {}, {}
  if req.list then
    for i, h in ipairs(req.list) do if not pos[h] then pos[h] = i end end
  else
    for _, c in ipairs(req.classes) do eligible[c] = true end
  end
  local function candidate(h, st)
    if req.list then return pos[h] ~= nil end
    return not req.skip[h] and st.class ~= nil and eligible[st.class] == true
  end
  if req.held then
    local c = claim_of(ctx, req.vm)
    if c then
      local h = parse_claim(c)
      if candidate(h, host_state(ctx, h)) then return h, nil end
    end
  end
  local best, bestSt, bestCount, bestFree, bestPos = nil, nil, nil, nil, nil
  local function consider(h, st, count)
    local free, p = st.capMem - st.mem, pos[h] or 0
    if best == nil or count < bestCount or
      (count == bestCount and better(req.policy, free, h, p, bestFree, best, bestPos)) then
      best, bestSt, bestCount, bestFree, bestPos = h, st, count, free, p
    end
  end
  if req.list then
    for i, h in ipairs(req.list) do
      if pos[h] == i then
        local st = host_state(ctx, h)
        if usable(ctx, st, h, req) then consider(h, st, counts[h] or 0) end
      end
    end
    return best, bestSt
  end
  -- Hosts with none of the group's VMs: each class's first in policy order, the best of those.
  for _, c in ipairs(req.classes) do
    local h, st = walk_class(ctx, ctx.keyOf[c], req, counts)
    if h then consider(h, st, 0) end
  end
  if best then return best, bestSt end
  -- Else the group's own hosts: fewest of its VMs, then by policy.
  for h, n in pairs(counts) do
    local st = host_state(ctx, h)
    if candidate(h, st) and usable(ctx, st, h, req) then consider(h, st, n) end
  end
  return best, bestSt
end

-- The free-room zset of a host's class: ok, key (nil when the host has no class yet). Not ok when
-- the host's class is not among those the caller passed: the caller passes it and runs again.
local function class_key(ctx, h)
  local cls = ctx.classOf and ctx.classOf[h]
  if cls == nil then cls = remember(ctx, 'classOf', h, redis.call('HGET', ctx.hosts, h .. '.class')) end
  if not cls then return true, nil end
  local key = ctx.keyOf[cls]
  if key then return true, key end
  return false, cls
end

-- Moves the host's numbers by (mem, vcpus, disk) and keeps its free-room score in step.
local function add_room(ctx, h, key, mem, vcpus, disk)
  local m
  local used = ctx.usedOf and ctx.usedOf[h]
  if used then
    -- Read by this call (host_state) and changed only here since: one write for the three numbers.
    used.mem, used.vcpus, used.disk = used.mem + mem, used.vcpus + vcpus, used.disk + disk
    redis.call('HSET', ctx.hosts, h .. '.mem', used.mem, h .. '.vcpus', used.vcpus, h .. '.disk', used.disk)
    m = used.mem
  else
    m = redis.call('HINCRBY', ctx.hosts, h .. '.mem', mem)
    redis.call('HINCRBY', ctx.hosts, h .. '.vcpus', vcpus)
    redis.call('HINCRBY', ctx.hosts, h .. '.disk', disk)
  end
  if key then
    local cap = ctx.capMemOf and ctx.capMemOf[h]
    if cap == nil then cap = redis.call('HGET', ctx.hosts, h .. '.capMem') end
    cap = tonumber(cap or '0')
    redis.call('ZADD', key, cap - m, h)
  end
end

-- A class some write of take_room would need and the caller did not pass, and its host; or nil.
local function missing_class(ctx, h, vm)
  local ok, cls = class_key(ctx, h)
  if not ok then return cls, h end
  local c = claim_of(ctx, vm)
  if c then
    local ph = parse_claim(c)
    if ph ~= h then
      ok, cls = class_key(ctx, ph)
      if not ok then return cls, ph end
    end
  end
  return nil
end

-- Gives back the VM's claim (on `h` only, when given). True when it held one.
local function release_room(ctx, vm, h)
  local c = claim_of(ctx, vm)
  if not c then return false end
  local ph, m, v, d = parse_claim(c)
  if h and ph ~= h then return false end
  local _, key = class_key(ctx, ph)
  redis.call('HDEL', ctx.claims, vm)
  remember(ctx, 'claimOf', vm, false)
  add_room(ctx, ph, key, 0 - m, 0 - v, 0 - d)
  return true
end

-- Claims the VM's room on `h` (a claim it holds on another host moves here). Call missing_class first.
local function take_room(ctx, h, req)
  local c = claim_of(ctx, req.vm)
  if c then
    local ph = parse_claim(c)
    if ph == h then return end
    release_room(ctx, req.vm, ph)
  end
  local _, key = class_key(ctx, h)
  add_room(ctx, h, key, req.mem, req.vcpus, req.disk)
  local claim = h .. ':' .. req.mem .. ':' .. req.vcpus .. ':' .. req.disk
  redis.call('HSET', ctx.claims, req.vm, claim)
  remember(ctx, 'claimOf', req.vm, claim)
  if ctx.group then redis.call('HSET', ctx.group, req.vm, h) end
end

-- ms since epoch by Redis's clock, unless the caller gives one.
local function now_ms(arg)
  if arg and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
