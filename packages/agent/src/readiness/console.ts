import { readFile } from "node:fs/promises";
import type { ReadinessStrategy } from "./probe.js";

/** `console=PATTERN`: the guest printed PATTERN on its serial console. */
export function consoleStrategy(pattern: string): ReadinessStrategy {
  return {
    pollMs: 100,
    async probe(ctx) {
      const text = await readFile(ctx.consolePath, "utf8").catch(() => "");
      return text.includes(pattern)
        ? { ready: true, message: `guest printed "${pattern}"` }
        : { ready: false, stuck: `waiting for "${pattern}" on the serial console` };
    },
  };
}
