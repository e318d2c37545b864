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
  const seen = new Set<string>();
  const pieces: string[] = [];
  const expand = (file: URL): string =>
    readFileSync(file, "utf8").replace(INCLUDE, (_, rel: string) => {
      const target = new URL(rel.endsWith(".lua") ? rel : `${rel}.lua`, file);
      const key = fileURLToPath(target);
      if (!seen.has(key)) {
        seen.add(key);
        pieces.push(expand(target));
      }
      return "";
    });
  const body = expand(url);
  return { includes: pieces.join("\n"), body };
}

/** A Lua file's whole text, its includes first. */
export function loadLua(url: URL): string {
  const { includes, body } = loadLuaParts(url);
  return `${includes}\n${body}`;
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

  constructor(url: URL) {
    const file = fileURLToPath(url);
    const match = /([^/]+?)(?:-(\d+))?\.lua$/.exec(file);
    if (match === null) throw new Error(`not a Lua file: ${file}`);
    this.name = match[1] as string;
    this.numKeys = match[2] === undefined ? undefined : Number(match[2]);
    this.source = loadLua(url);
  }

  run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    if (this.numKeys !== undefined && keys.length !== this.numKeys)
      throw new Error(`${this.name} takes ${this.numKeys} keys, got ${keys.length}`);
    return runScript(redis, this.source, keys.length, ...keys, ...args);
  }
}
