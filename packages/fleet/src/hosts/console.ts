import { randomUUID } from "node:crypto";
import { type ConsoleRequest, ConsoleResult, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { HostRpc, replyToAsker } from "./host-rpc.js";

/** How long `ConsoleClient.tail` waits for the host's worker by default (ms). */
export const DEFAULT_CONSOLE_TIMEOUT_MS = 5_000;

/**
 * Reads the last lines of VMs' serial consoles through their hosts' workers (the console is a file
 * on the VM's host; nothing else can read it): a request is published on the host's console
 * channel, the worker reads the file's tail and LPUSHes its answer to a reply list the asker BLPOPs
 * (see HostRpc). Nothing is written to Redis unless someone asks (no per-VM tail kept up to date
 * for nobody).
 */
export class ConsoleClient {
  readonly #rpc: HostRpc<ConsoleResult>;

  constructor(redis: Redis, keys: Keys) {
    this.#rpc = new HostRpc(redis, {
      name: "console",
      channel: (hostId) => keys.consoleChannel(hostId),
      replyKey: (requestId) => keys.consoleReply(requestId),
      result: ConsoleResult,
      noWorker: { code: "HOST_TIMEOUT" },
      noAnswer: "HOST_TIMEOUT",
      vmField: "name",
    });
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
    const request: ConsoleRequest = { id: randomUUID(), vm, lines };
    const subject = `for the console of "${vm}"`;
    const result = await this.#rpc.call(hostId, request, timeoutMs, {
      task: `read the console of "${vm}"`,
      subject,
    });
    if (result.lines === undefined || result.updatedAt === undefined)
      throw new VirtfleetError("INTERNAL", `host "${hostId}" answered ${subject} without lines`);
    return { lines: result.lines, updatedAt: result.updatedAt };
  }

  /** Closes the connections it opened (not the one it was given). */
  async close(): Promise<void> {
    await this.#rpc.close();
  }
}

/** A worker's answer to a console request: pushed to the asker's reply list, kept a minute. */
export async function replyConsole(redis: Redis, keys: Keys, requestId: string, result: ConsoleResult): Promise<void> {
  await replyToAsker(redis, keys.consoleReply(requestId), result);
}
