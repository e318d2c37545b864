import { ErrorCode, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { z } from "zod";
import { closeRedis, quietErrors } from "../redis/connection.js";

/** How long a worker's answer is kept for its asker (ms). */
export const HOST_REPLY_TTL_MS = 60_000;

/** What a worker answers: its result's fields, or why it failed. */
export interface HostAnswer {
  error?: { code: string; message: string } | undefined;
}

/** One kind of request a host's worker answers at once (power, console): where it goes, what comes back. */
export interface HostRpcKind<Result extends HostAnswer> {
  /** Named in "… client is closed". */
  name: string;
  /** The host's channel the request is published on. */
  channel: (hostId: string) => string;
  /** The list the worker LPUSHes its answer to and the asker BLPOPs. */
  replyKey: (requestId: string) => string;
  /** The answer's schema; one that does not fit is INTERNAL. */
  result: z.ZodType<Result>;
  /** No worker of the host listens. */
  noWorker: { code: ErrorCode; field?: string };
  /** The worker did not answer in time. */
  noAnswer: ErrorCode;
  /** The field a VM_NOT_FOUND from the worker names. */
  vmField: string;
}

/** How one request is told of in errors. */
export interface HostRpcWording {
  /** `no worker of host "h" is up to ${task}`, e.g. `suspend "vm-1"`. */
  task: string;
  /** `host "h" did not answer ${subject} within …`, e.g. `the suspend of "vm-1"`. */
  subject: string;
}

/**
 * Request/reply to a host's worker through Redis: the request is published on the host's channel,
 * the worker does it and LPUSHes its answer to a reply list of the request's own that the asker
 * BLPOPs (no polling). A blocking connection serves one request at a time: one is opened per request
 * in flight and kept for the next. Used by PowerClient and ConsoleClient; the worker answers with
 * `replyToAsker`.
 */
export class HostRpc<Result extends HostAnswer> {
  readonly #redis: Redis;
  readonly #kind: HostRpcKind<Result>;
  /** Connections for BLPOP, one per request in flight (a blocked connection serves no one else). */
  readonly #idle: Redis[] = [];
  readonly #all = new Set<Redis>();
  #closed = false;

  constructor(redis: Redis, kind: HostRpcKind<Result>) {
    this.#redis = redis;
    this.#kind = kind;
  }

  /**
   * Sends `request` to the worker of `hostId` and answers its result. The kind's `noWorker` error
   * when no worker of the host listens, its `noAnswer` one when none answers within `timeoutMs`;
   * INTERNAL for an answer that does not fit the schema; the worker's own failure is passed on (an
   * unknown code as INTERNAL).
   */
  async call(
    hostId: string,
    request: { id: string },
    timeoutMs: number,
    wording: HostRpcWording,
  ): Promise<Omit<Result, "error">> {
    const kind = this.#kind;
    if (this.#closed) throw new VirtfleetError("INTERNAL", `${kind.name} client is closed`);
    const blocking = this.#take();
    try {
      const listeners = await this.#redis.publish(kind.channel(hostId), JSON.stringify(request));
      if (listeners === 0)
        throw new VirtfleetError(
          kind.noWorker.code,
          `no worker of host "${hostId}" is up to ${wording.task}`,
          kind.noWorker.field === undefined ? {} : { field: kind.noWorker.field },
        );
      const popped = await blocking.blpop(kind.replyKey(request.id), Math.max(timeoutMs, 1) / 1000);
      if (popped === null)
        throw new VirtfleetError(
          kind.noAnswer,
          `host "${hostId}" did not answer ${wording.subject} within ${timeoutMs} ms`,
        );
      let parsed: Result;
      try {
        parsed = kind.result.parse(JSON.parse(popped[1]));
      } catch {
        throw new VirtfleetError("INTERNAL", `host "${hostId}" answered ${wording.subject} with a bad result`);
      }
      const { error, ...result } = parsed;
      if (error !== undefined) {
        const code = ErrorCode.safeParse(error.code);
        throw new VirtfleetError(code.success ? code.data : "INTERNAL", error.message, {
          ...(code.success && code.data === "VM_NOT_FOUND" ? { field: kind.vmField } : {}),
        });
      }
      return result;
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

/** A worker's answer to a request of a `HostRpc`: pushed to the asker's reply list, kept a minute. */
export async function replyToAsker(redis: Redis, replyKey: string, result: unknown): Promise<void> {
  await redis.multi().lpush(replyKey, JSON.stringify(result)).pexpire(replyKey, HOST_REPLY_TTL_MS).exec();
}
