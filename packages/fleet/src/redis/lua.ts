import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { runScript } from "./scripts.js";

const INCLUDE = /^--- @include "([^"]+)"\s*$/gm;

/** A Lua file's text split in two: what its `@include` lines bring in, and its own text. */
export interface LuaParts {
  includes: string;
  body: string;
}

/**
 * Reads a Lua file kept next to the code that runs it (the way BullMQ keeps its own). A line
 * `--- @include "includes/name"` (a path relative to the file, `.lua` optional) brings in that file,
 * once per script however many files include it; included files may include others.
 */
export function loadLuaParts(url: URL): LuaParts {
  const seen = new Set<string>([fileURLToPath(url)]);
  const pieces: string[] = [];
  const read = (file: URL, from: URL | undefined): string => {
    try {
      return readFileSync(file, "utf8");
    } catch (error) {
      const where = from === undefined ? "" : ` (included by ${fileURLToPath(from)})`;
      throw new Error(`cannot read Lua file ${fileURLToPath(file)}${where}: ${(error as Error).message}`);
    }
  };
  const expand = (file: URL, from: URL | undefined): string =>
    read(file, from).replace(INCLUDE, (_, rel: string) => {
      const target = new URL(rel.endsWith(".lua") ? rel : `${rel}.lua`, file);
      const key = fileURLToPath(target);
      if (!seen.has(key)) {
        seen.add(key);
        pieces.push(expand(target, file));
      }
      return "";
    });
  const body = expand(url, undefined);
  return { includes: pieces.join("\n"), body };
}

/** A Lua file's whole text, its includes first. */
export function loadLua(url: URL): string {
  const { includes, body } = loadLuaParts(url);
  return `${includes}\n${body}`;
}

/**
 * A Lua command file's name and key count, from its name `<name>-<numKeys>.lua` (BullMQ's naming);
 * numKeys is undefined for a name with no key count (a command that takes a list of keys).
 */
export function luaCommandName(url: URL): { name: string; numKeys: number | undefined } {
  const file = fileURLToPath(url);
  const match = /([^/]+?)(?:-(\d+))?\.lua$/.exec(file);
  if (match === null) throw new Error(`not a Lua file: ${file}`);
  return { name: match[1] as string, numKeys: match[2] === undefined ? undefined : Number(match[2]) };
}

/** Throws unless a command that takes `numKeys` keys (undefined: any number) was given that many. */
export function checkKeyCount(name: string, numKeys: number | undefined, keys: readonly string[]): void {
  if (numKeys !== undefined && keys.length !== numKeys)
    throw new Error(`${name} takes ${numKeys} keys, got ${keys.length}`);
}

/**
 * A Lua command kept as `<name>-<numKeys>.lua` (BullMQ's naming; a name with no key count takes a
 * list of keys its header describes), loaded once and run by SHA (see runScript).
 */
export class LuaCommand {
  readonly name: string;
  readonly source: string;
  /** How many KEYS it takes; undefined for a command that takes a list. */
  readonly numKeys: number | undefined;

  /**
   * `numKeys`, for a file named without its key count (e.g. the labs' `lua/` files), gives it; a
   * file whose name has one must agree.
   */
  constructor(url: URL, numKeys?: number) {
    const named = luaCommandName(url);
    if (numKeys !== undefined && named.numKeys !== undefined && numKeys !== named.numKeys)
      throw new Error(`${fileURLToPath(url)} takes ${named.numKeys} keys, not ${numKeys}`);
    this.name = named.name;
    this.numKeys = numKeys ?? named.numKeys;
    this.source = loadLua(url);
  }

  run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    checkKeyCount(this.name, this.numKeys, keys);
    return runScript(redis, this.source, keys.length, ...keys, ...args);
  }
}
