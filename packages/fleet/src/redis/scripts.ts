import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { sendFlat } from "./flat-command.js";
import { checkKeyCount, loadLuaParts, luaCommandName } from "./lua.js";

const shas = new Map<string, string>();

/**
 * Runs a Lua script by its SHA1 (EVALSHA), sending the source only when Redis does not have it
 * (first use, or after a restart flushed its script cache).
 */
export async function runScript(
  redis: Redis,
  source: string,
  numKeys: number,
  ...args: (string | number)[]
): Promise<unknown> {
  const sha = shaOf(source);
  try {
    return await redis.evalsha(sha, numKeys, ...args);
  } catch (error) {
    if (!String((error as Error).message).includes("NOSCRIPT")) throw error;
    return redis.eval(source, numKeys, ...args);
  }
}

/**
 * Like runScript, for a long argument list already flat, its first place left for the script
 * (`_, numKeys, ...keys, ...args`): sent as a FlatCommand (one string; the list not copied). With
 * `first` (this script's first run from here), the source goes at once (EVAL, which caches it):
 * no NOSCRIPT answer to wait for and the whole list to send again.
 */
async function runScriptFlat(redis: Redis, source: string, args: string[], first = false): Promise<unknown> {
  if (first) {
    args[0] = source;
    return sendFlat(redis, "eval", args);
  }
  args[0] = shaOf(source);
  try {
    return await sendFlat(redis, "evalsha", args);
  } catch (error) {
    if (!String((error as Error).message).includes("NOSCRIPT")) throw error;
    return sendFlat(redis, "eval", [source, ...args.slice(1)]);
  }
}

function shaOf(source: string): string {
  let sha = shas.get(source);
  if (sha === undefined) {
    sha = createHash("sha1").update(source).digest("hex");
    shas.set(source, sha);
  }
  return sha;
}

interface Pending {
  keys: string[];
  args: string[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * A Lua script whose calls are coalesced: calls made in the same turn of the event loop go to Redis
 * as one EVALSHA that runs the script's body once per call, each call atomic as if run alone (so
 * is the whole batch). Many concurrent jobs' events or admissions then cost Redis one script run
 * and the client one command, not one each. `lib` holds local functions the body uses; the body
 * reads its own KEYS and ARGV. A call whose body returns false (or nothing) resolves to null. The
 * optional `epilogue` runs once after all of a run's calls (to write what they gathered).
 * Given a `file` (a command file `<name>-<numKeys>.lua`, see LuaCommand), its `@include`s are the lib
 * and its own text the body, and each call's key count is checked.
 */
export class BatchedScript {
  readonly #redis: Redis;
  readonly #single: string;
  readonly #multi: string;
  readonly #maxBatch: number;
  #pending: Pending[] = [];
  /** Batches that reached maxBatch, waiting for the scheduled flush. */
  #full: Pending[][] = [];
  #scheduled = false;
  /** The forms (single, multi) run once already: later runs send their SHA. */
  readonly #sent = new Set<string>();
  readonly #name: string;
  readonly #numKeys: number | undefined;

  /** Send a batch as soon as it is full (see the constructor's `fullAtOnce`). */
  readonly #fullAtOnce: boolean;

  /**
   * `maxBatch`: the most calls one script run makes. `fullAtOnce`: a full batch goes to Redis at
   * once, while the caller goes on making calls (Redis runs it meanwhile), instead of after this
   * turn of the event loop. Only for a script whose calls need not run after commands the caller
   * sent earlier in the same turn (e.g. admission: each call stands alone).
   */
  constructor(
    redis: Redis,
    source: { lib: string; body: string; epilogue?: string } | { file: URL; epilogue?: string },
    maxBatch = 200,
    fullAtOnce = false,
  ) {
    this.#redis = redis;
    this.#maxBatch = maxBatch;
    this.#fullAtOnce = fullAtOnce;
    let script: { lib: string; body: string; epilogue?: string };
    if ("file" in source) {
      const { includes, body } = loadLuaParts(source.file);
      script = { lib: includes, body, ...(source.epilogue === undefined ? {} : { epilogue: source.epilogue }) };
      ({ name: this.#name, numKeys: this.#numKeys } = luaCommandName(source.file));
    } else {
      script = source;
      this.#name = "script";
      this.#numKeys = undefined;
    }
    const run = `${script.lib}\nlocal function run(KEYS, ARGV)\n${script.body}\nend\n`;
    const epilogue = script.epilogue ?? "";
    this.#single = `${run}local r = run(KEYS, ARGV)\n${epilogue}\nreturn r`;
    // ARGV: count, then per call: its key count, its arg count, its args. KEYS: every call's keys.
    this.#multi = `${run}
local out, k, a = {}, 1, 2
for i = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local ks, as = { unpack(KEYS, k, k + nk - 1) }, { unpack(ARGV, a, a + na - 1) }
  k, a = k + nk, a + na
  local r = run(ks, as)
  if r == nil or r == false then r = 0 end
  out[i] = r
end
${epilogue}
return out`;
  }

  call(keys: string[], args: string[]): Promise<unknown> {
    checkKeyCount(this.#name, this.#numKeys, keys);
    return new Promise((resolve, reject) => {
      this.#pending.push({ keys, args, resolve, reject });
      if (this.#pending.length >= this.#maxBatch) {
        if (this.#fullAtOnce) this.#flush();
        else {
          this.#full.push(this.#pending);
          this.#pending = [];
        }
      }
      if (!this.#scheduled) {
        // Sent once this turn of the event loop is over, full batches first, in the order called:
        // after the commands queued before the first call with auto-pipelining (ioredis sends them
        // from a setImmediate too), so Redis runs everything in the order it was asked for.
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          const full = this.#full;
          this.#full = [];
          for (const batch of full) this.#flush(batch);
          this.#flush();
        });
      }
    });
  }

  /** Runs one form of the script (its source the first time, then its SHA). */
  #run(source: string, args: string[]): Promise<unknown> {
    const first = !this.#sent.has(source);
    this.#sent.add(source);
    return runScriptFlat(this.#redis, source, args, first);
  }

  #flush(batch = this.#pending): void {
    if (batch.length === 0) return;
    if (batch === this.#pending) this.#pending = [];
    if (batch.length === 1) {
      const only = batch[0] as (typeof batch)[number];
      this.#run(this.#single, ["", String(only.keys.length), ...only.keys, ...only.args]).then(
        only.resolve,
        only.reject,
      );
      return;
    }
    // One flat list: (the script's place,) the key count, every call's keys, then the call count
    // and each call's own.
    let numKeys = 0;
    for (const c of batch) numKeys += c.keys.length;
    const flat: string[] = new Array(2 + numKeys);
    flat[0] = "";
    flat[1] = String(numKeys);
    let k = 2;
    for (const c of batch) for (const key of c.keys) flat[k++] = key;
    flat.push(String(batch.length));
    for (const c of batch) {
      flat.push(String(c.keys.length), String(c.args.length));
      for (const a of c.args) flat.push(a);
    }
    this.#run(this.#multi, flat).then(
      (results) => {
        const list = results as unknown[];
        for (const [i, c] of batch.entries()) c.resolve(list[i] === 0 ? null : list[i]);
      },
      (error: unknown) => {
        for (const c of batch) c.reject(error);
      },
    );
  }
}
