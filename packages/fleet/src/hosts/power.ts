import { randomUUID } from "node:crypto";
import { type PowerAction, type PowerRequest, PowerResult, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { HostRpc, replyToAsker } from "./host-rpc.js";

/** How long `PowerClient.power` waits for the host's worker by default (ms). */
export const DEFAULT_POWER_TIMEOUT_MS = 10_000;

/**
 * Pauses and resumes VMs on their hosts through the hosts' workers: a request is published on the
 * host's power channel, the worker does it and LPUSHes its answer to a reply list the asker BLPOPs
 * (no polling: a claim waits for this; see HostRpc). Implements `PowerControl` of @virtfleet/labs.
 */
export class PowerClient {
  readonly #rpc: HostRpc<PowerResult>;

  constructor(redis: Redis, keys: Keys) {
    this.#rpc = new HostRpc(redis, {
      name: "power",
      channel: (hostId) => keys.powerChannel(hostId),
      replyKey: (requestId) => keys.powerReply(requestId),
      result: PowerResult,
      noWorker: { code: "HOST_NOT_FOUND", field: "host" },
      noAnswer: "COMMAND_TIMEOUT",
      vmField: "vm",
    });
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
    const request: PowerRequest = { id: randomUUID(), vm, action };
    const subject = `the ${action} of "${vm}"`;
    const result = await this.#rpc.call(hostId, request, timeoutMs, { task: `${action} "${vm}"`, subject });
    if (result.state === undefined)
      throw new VirtfleetError("INTERNAL", `host "${hostId}" answered ${subject} without a state`);
    return { state: result.state, ...(result.clockSet === undefined ? {} : { clockSet: result.clockSet }) };
  }

  /** Closes the connections it opened (not the one it was given). */
  async close(): Promise<void> {
    await this.#rpc.close();
  }
}

/** A worker's answer to a power request: pushed to the asker's reply list, kept a minute. */
export async function replyPower(redis: Redis, keys: Keys, requestId: string, result: PowerResult): Promise<void> {
  await replyToAsker(redis, keys.powerReply(requestId), result);
}
