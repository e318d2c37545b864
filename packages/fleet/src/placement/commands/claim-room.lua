--[[
  Claims room for a VM on the best host (see includes/room.lua), atomically: no two claims can both
  take the last of a host's room, and a burst of requests spreads (or packs) as it would one by one.

  KEYS: 1 placement hosts hash, 2 placement claims hash, 3 alive zset, 4 drained set,
        5 the group hash (any key when there is no group), 6.. the free-room zsets of the classes in ARGV.
  ARGV: 1 vm, 2 memoryMiB, 3 vcpus, 4 diskGiB, 5 policy ('spread' | 'pack' | 'order'),
        6 grouped ('1' | '0'), 7 now in ms ('' = Redis's clock), 8 walk page size,
        9 mode: 'classes' (candidates: the hosts of the eligible classes) or 'list' (the hosts given),
        10 held ('1': a VM holding a claim on a candidate keeps it), 11 n: classes passed,
        12 e: how many of them (the first e) are eligible, then the n class ids (KEYS 6.. in the same
        order), then host ids: list mode the candidates in order, classes mode the hosts left out.
  Returns {'claimed', host} | {'noroom'} | {'class', id, host}: the chosen host (or the host of the
        VM's earlier claim) is of class `id`, not passed: pass it too and run again (nothing was written).
]]
--- @include "../includes/room"

local n, e = tonumber(ARGV[11]), tonumber(ARGV[12])
local ctx = { hosts = KEYS[1], claims = KEYS[2], alive = KEYS[3], drained = KEYS[4], keyOf = {},
  now = now_ms(ARGV[7]), page = tonumber(ARGV[8]) }
if ARGV[6] == '1' then ctx.group = KEYS[5] end
local req = { vm = ARGV[1], mem = tonumber(ARGV[2]), vcpus = tonumber(ARGV[3]), disk = tonumber(ARGV[4]),
  policy = ARGV[5], held = ARGV[10] == '1', classes = {}, skip = {} }
for i = 1, n do
  ctx.keyOf[ARGV[12 + i]] = KEYS[5 + i]
  if i <= e then req.classes[#req.classes + 1] = ARGV[12 + i] end
end
local hosts = {}
for i = 13 + n, #ARGV do hosts[#hosts + 1] = ARGV[i] end
if ARGV[9] == 'list' then req.list = hosts else for _, h in ipairs(hosts) do req.skip[h] = true end end

local host, st = find_room(ctx, req)
if not host then return { 'noroom' } end
if st then
  local missing, of = missing_class(ctx, host, req.vm)
  if missing then return { 'class', missing, of } end
  take_room(ctx, host, req)
end
return { 'claimed', host }
