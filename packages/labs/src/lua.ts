import { readFileSync } from "node:fs";
import { runScript } from "@virtfleet/fleet";
import type { Redis } from "ioredis";

/**
 * A Lua script kept as a `.lua` file in this package's `lua/` folder (the way BullMQ keeps its own),
 * run by SHA. The file's header documents its KEYS and ARGV.
 */
export class LuaScript {
  readonly name: string;
  readonly source: string;
  /** How many KEYS it takes; `"any"` for a script that takes a list of keys (its header says which). */
  readonly numKeys: number | "any";

  constructor(name: string, numKeys: number | "any") {
    this.name = name;
    this.numKeys = numKeys;
    this.source = readFileSync(new URL(`../lua/${name}.lua`, import.meta.url), "utf8");
  }

  run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    if (this.numKeys !== "any" && keys.length !== this.numKeys)
      throw new Error(`${this.name}.lua takes ${this.numKeys} keys, got ${keys.length}`);
    return runScript(redis, this.source, keys.length, ...keys, ...args);
  }
}
