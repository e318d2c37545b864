import { randomUUID } from "node:crypto";
import { ErrorCode, type PowerAction, type PowerRequest, PowerResult, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { closeRedis, quietErrors } from "../redis/connection.js";
import type { Keys } from "../redis/keys.js";

/** How long `PowerClient.power` waits for the host's worker by default (ms). */
export const DEFAULT_POWER_TIMEOUT_MS = 10_000;
/** How long a worker's answer is kept for its asker (ms). */
const REPLY_TTL_MS = 60_000;

/**
 * Pauses and resumes VMs on their hosts through the hosts' workers: a request is published on the
 * host's power channel, the worker does it and LPUSHes its answer to a reply list the asker BLPOPs
 * (no polling: a claim waits for this). Implements `PowerControl` of @virtfleet/labs.
 */
export class PowerClient {
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
   * `suspend` or `resume` the VM `vm` on `hostId` and answer libvirt's state afterwards (after a
   * resume the guest's clock is set through its agent when it has one). HOST_NOT_FOUND: no worker
   * of that host listens; VM_NOT_FOUND: no such VM of this fleet there; COMMAND_TIMEOUT: no answer
   * within `timeoutMs`; the worker's own failure (COMMAND_FAILED, INTERNAL, …) is passed on.
   */
  async power(
    hostId: string,
    vm: string,
    action: PowerAction,
    timeoutMs = DEFAULT_POWER_TIMEOUT_MS,
  ): Promise<{ state: string; clockSet?: boolean }> {
    if (this.#closed) throw new VirtfleetError("INTERNAL", "power client is closed");
    const request: PowerRequest = { id: randomUUID(), vm, action };
    const replyKey = this.#keys.powerReply(request.id);
    const blocking = this.#take();
    try {
      const listeners = await this.#redis.publish(this.#keys.powerChannel(hostId), JSON.stringify(request));
      if (listeners === 0)
        throw new VirtfleetError("HOST_NOT_FOUND", `no worker of host "${hostId}" is up to ${action} "${vm}"`, {
          field: "host",
        });
      const popped = await blocking.blpop(replyKey, Math.max(timeoutMs, 1) / 1000);
      if (popped === null)
        throw new VirtfleetError(
          "COMMAND_TIMEOUT",
          `host "${hostId}" did not answer the ${action} of "${vm}" within ${timeoutMs} ms`,
        );
      let parsed: PowerResult;
      try {
        parsed = PowerResult.parse(JSON.parse(popped[1]));
      } catch {
        throw new VirtfleetError("INTERNAL", `host "${hostId}" answered the ${action} of "${vm}" with a bad result`);
      }
      if (parsed.error !== undefined) {
        const code = ErrorCode.safeParse(parsed.error.code);
        throw new VirtfleetError(code.success ? code.data : "INTERNAL", parsed.error.message, {
          ...(code.success && code.data === "VM_NOT_FOUND" ? { field: "vm" } : {}),
        });
      }
      if (parsed.state === undefined)
        throw new VirtfleetError("INTERNAL", `host "${hostId}" answered the ${action} of "${vm}" without a state`);
      return { state: parsed.state, ...(parsed.clockSet === undefined ? {} : { clockSet: parsed.clockSet }) };
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

/** A worker's answer to a power request: pushed to the asker's reply list, kept a minute. */
export async function replyPower(redis: Redis, keys: Keys, requestId: string, result: PowerResult): Promise<void> {
  const key = keys.powerReply(requestId);
  await redis.multi().lpush(key, JSON.stringify(result)).pexpire(key, REPLY_TTL_MS).exec();
}
