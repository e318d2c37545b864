import { randomUUID } from "node:crypto";
import { type ConsoleRequest, ConsoleResult, ErrorCode, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { closeRedis, quietErrors } from "../redis/connection.js";
import type { Keys } from "../redis/keys.js";

/** How long `ConsoleClient.tail` waits for the host's worker by default (ms). */
export const DEFAULT_CONSOLE_TIMEOUT_MS = 5_000;
/** How long a worker's answer is kept for its asker (ms). */
const REPLY_TTL_MS = 60_000;

/**
 * Reads the last lines of VMs' serial consoles through their hosts' workers (the console is a file
 * on the VM's host; nothing else can read it): a request is published on the host's console
 * channel, the worker reads the file's tail and LPUSHes its answer to a reply list the asker BLPOPs.
 * Nothing is written to Redis unless someone asks (no per-VM tail kept up to date for nobody).
 */
export class ConsoleClient {
  readonly #redis: Redis;
  readonly #keys: Keys;
  /** Connections for BLPOP, one per request in flight (a blocked connection serves no one else). */
  readonly #idle: Redis[] = [];
  readonly #all = new Set<Redis>();
  #closed = false;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /**
   * The last `lines` lines of `vm`'s serial console on `hostId`, and when it was last written.
   * HOST_TIMEOUT: no worker of the host listens, or none answered within `timeoutMs`;
   * VM_NOT_FOUND: no such VM of this fleet there; the worker's own failure is passed on.
   */
  async tail(
    hostId: string,
    vm: string,
    lines: number,
    timeoutMs = DEFAULT_CONSOLE_TIMEOUT_MS,
  ): Promise<{ lines: string[]; updatedAt: string }> {
    if (this.#closed) throw new VirtfleetError("INTERNAL", "console client is closed");
    const request: ConsoleRequest = { id: randomUUID(), vm, lines };
    const blocking = this.#take();
    try {
      const listeners = await this.#redis.publish(this.#keys.consoleChannel(hostId), JSON.stringify(request));
      if (listeners === 0)
        throw new VirtfleetError("HOST_TIMEOUT", `no worker of host "${hostId}" is up to read the console of "${vm}"`);
      const popped = await blocking.blpop(this.#keys.consoleReply(request.id), Math.max(timeoutMs, 1) / 1000);
      if (popped === null)
        throw new VirtfleetError(
          "HOST_TIMEOUT",
          `host "${hostId}" did not answer for the console of "${vm}" within ${timeoutMs} ms`,
        );
      let parsed: ConsoleResult;
      try {
        parsed = ConsoleResult.parse(JSON.parse(popped[1]));
      } catch {
        throw new VirtfleetError("INTERNAL", `host "${hostId}" answered for the console of "${vm}" with a bad result`);
      }
      if (parsed.error !== undefined) {
        const code = ErrorCode.safeParse(parsed.error.code);
        throw new VirtfleetError(code.success ? code.data : "INTERNAL", parsed.error.message, {
          ...(code.success && code.data === "VM_NOT_FOUND" ? { field: "name" } : {}),
        });
      }
      if (parsed.lines === undefined || parsed.updatedAt === undefined)
        throw new VirtfleetError("INTERNAL", `host "${hostId}" answered for the console of "${vm}" without lines`);
      return { lines: parsed.lines, updatedAt: parsed.updatedAt };
    } finally {
      this.#give(blocking);
    }
  }

  /** Closes the connections it opened (not the one it was given). */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#all];
    this.#all.clear();
    this.#idle.length = 0;
    await Promise.all(all.map((r) => closeRedis(r)));
  }

  #take(): Redis {
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    const r = quietErrors(this.#redis.duplicate({ enableAutoPipelining: false }));
    this.#all.add(r);
    return r;
  }

  #give(r: Redis): void {
    if (this.#closed || !this.#all.has(r)) {
      r.disconnect();
      return;
    }
    this.#idle.push(r);
  }
}

/** A worker's answer to a console request: pushed to the asker's reply list, kept a minute. */
export async function replyConsole(redis: Redis, keys: Keys, requestId: string, result: ConsoleResult): Promise<void> {
  const key = keys.consoleReply(requestId);
  await redis.multi().lpush(key, JSON.stringify(result)).pexpire(key, REPLY_TTL_MS).exec();
}
