import { LuaCommand } from "@virtfleet/fleet";
import type { Redis } from "ioredis";

/**
 * A Lua script kept as a `.lua` file in this package's `lua/` folder (the way BullMQ keeps its own),
 * loaded with the fleet's loader (LuaCommand: `@include` lines expanded, run by SHA). The file's
 * header documents its KEYS and ARGV.
 */
export class LuaScript {
  readonly name: string;
  readonly source: string;
  /** How many KEYS it takes; `"any"` for a script that takes a list of keys (its header says which). */
  readonly numKeys: number | "any";
  readonly #command: LuaCommand;

  constructor(name: string, numKeys: number | "any") {
    this.name = name;
    this.numKeys = numKeys;
    this.#command = new LuaCommand(
      new URL(`../lua/${name}.lua`, import.meta.url),
      numKeys === "any" ? undefined : numKeys,
    );
    this.source = this.#command.source;
  }

  run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.#command.run(redis, keys, args);
  }
}
