import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { checkKeyCount, LuaCommand, loadLua, loadLuaParts, luaCommandName } from "./lua.js";

let dir: string;
const file = (rel: string, text: string): URL => {
  const path = join(dir, rel);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
  return pathToFileURL(path);
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "virtfleet-lua-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("the Lua loader", () => {
  test("an include comes in once however many files include it, before the file's own text", () => {
    file("includes/a.lua", "local function a() return 1 end\n");
    file("includes/b.lua", '--- @include "a"\nlocal function b() return a() end\n');
    const url = file(
      "commands/run-1.lua",
      '--- @include "../includes/a"\n--- @include "../includes/b.lua"\n--- @include "../includes/a"\nreturn b()\n',
    );
    const { includes, body } = loadLuaParts(url);
    expect(includes.match(/local function a\(\)/g)).toHaveLength(1);
    expect(includes.indexOf("function a(")).toBeLessThan(includes.indexOf("function b("));
    expect(body).not.toContain("@include");
    expect(body).toContain("return b()");
    expect(loadLua(url)).toBe(`${includes}\n${body}`);
  });

  test("nested includes resolve relative to the including file, not the command", () => {
    file("lib/deep/c.lua", "local C = 3\n");
    file("lib/b.lua", '--- @include "deep/c"\nlocal B = C\n');
    const url = file("cmd/x-0.lua", '--- @include "../lib/b"\nreturn B\n');
    const source = loadLua(url);
    expect(source.indexOf("local C = 3")).toBeLessThan(source.indexOf("local B = C"));
    expect(source.indexOf("local B = C")).toBeLessThan(source.indexOf("return B"));
  });

  test("a file including itself (or a cycle) is read once", () => {
    file("a.lua", '--- @include "b"\nlocal A = 1\n');
    const url = file("b.lua", '--- @include "a"\nreturn A\n');
    const source = loadLua(url);
    expect(source.match(/local A = 1/g)).toHaveLength(1);
    expect(source.match(/return A/g)).toHaveLength(1);
  });

  test("a missing include is an error naming it and the file that includes it", () => {
    const url = file("cmd/y-1.lua", '--- @include "../includes/nope"\nreturn 1\n');
    expect(() => loadLua(url)).toThrow(/cannot read Lua file .*includes\/nope\.lua \(included by .*cmd\/y-1\.lua\)/);
    expect(() => loadLua(new URL("missing-1.lua", pathToFileURL(`${dir}/`)))).toThrow(/missing-1\.lua: ENOENT/);
  });

  test("name and key count come from <name>-<numKeys>.lua; a command is refused the wrong number of keys", () => {
    expect(luaCommandName(pathToFileURL("/x/append-event-6.lua"))).toEqual({ name: "append-event", numKeys: 6 });
    expect(luaCommandName(pathToFileURL("/x/lease-take.lua"))).toEqual({ name: "lease-take", numKeys: undefined });
    expect(() => checkKeyCount("c", 2, ["a"])).toThrow("c takes 2 keys, got 1");
    expect(() => checkKeyCount("c", undefined, ["a", "b", "c"])).not.toThrow();
    const command = new LuaCommand(file("cmd/two-2.lua", "return 1\n"));
    expect(command.numKeys).toBe(2);
    // Refused before anything reaches Redis.
    expect(() => command.run({} as Redis, ["k"], [])).toThrow("two takes 2 keys, got 1");
    // A file named without a count can be given one; a named count must agree.
    expect(new LuaCommand(file("plain.lua", "return 1\n"), 3).numKeys).toBe(3);
    expect(() => new LuaCommand(file("cmd/one-1.lua", "return 1\n"), 2)).toThrow(/takes 1 keys, not 2/);
  });
});
