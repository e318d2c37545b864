--[[
  Gives a VM's room on a host back, once.

  KEYS: 1 placement hosts hash, 2 placement claims hash, 3 the free-room zset of the host's class
        as the caller believes it (any key when it believes the host has none).
  ARGV: 1 vm, 2 host, 3 the class the caller believes ('' none).
  Returns 1 (released), 0 (the VM held no room on that host), or {'class', id}: the host's class is
        `id`: run again with it (nothing was written).
]]
--- @include "../includes/room"

local ctx = { hosts = KEYS[1], claims = KEYS[2], keyOf = {} }
if ARGV[3] ~= '' then ctx.keyOf[ARGV[3]] = KEYS[3] end
local c = redis.call('HGET', ctx.claims, ARGV[1])
if not c or parse_claim(c) ~= ARGV[2] then return 0 end
local ok, cls = class_key(ctx, ARGV[2])
if not ok then return { 'class', cls } end
release_room(ctx, ARGV[1], ARGV[2])
return 1
