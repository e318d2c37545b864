import { randomUUID } from "node:crypto";
import { HostStatus, type ReconcileRequest, ReconcileResult, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { type Allocation, CapacityLedger } from "../placement/capacity-ledger.js";
import type { Keys } from "../redis/keys.js";

/** How long `requestReconcile` waits for the worker's answer by default. */
export const DEFAULT_RECONCILE_TIMEOUT_MS = 120_000;

export interface HostView {
  status: HostStatus;
  /** False when the heartbeat has expired. */
  up: boolean;
  /** Drained by an operator (`virtfleet hosts drain`), or draining on its own (shutting down). */
  draining: boolean;
  /** Room offered to VMs, and how much of it is claimed. */
  allocation: Allocation;
}

/** Hosts publish their status with a TTL; a host whose status expired is down. */
export class HostRegistry {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #ledger: CapacityLedger;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
    this.#ledger = new CapacityLedger(redis, keys);
  }

  /** Marks a host drained (it finishes what it runs, nothing new is placed on it), or undrains it. */
  async drain(hostId: string, on = true): Promise<void> {
    if (on) await this.#redis.set(this.#keys.drain(hostId), "1");
    else await this.#redis.del(this.#keys.drain(hostId));
  }

  /** Publishes a heartbeat that lives `ttlMs`. */
  async heartbeat(status: HostStatus, ttlMs: number): Promise<void> {
    const json = JSON.stringify(status);
    await this.#redis
      .multi()
      .set(this.#keys.hostStatus(status.hostId), json, "PX", ttlMs)
      .hset(this.#keys.hosts(), status.hostId, json)
      .exec();
  }

  /** Removes the live status (the host stays listed, as down). */
  async markDown(hostId: string): Promise<void> {
    await this.#redis.del(this.#keys.hostStatus(hostId));
  }

  async get(hostId: string): Promise<HostView | undefined> {
    const [live, last, drained, allocation] = await Promise.all([
      this.#redis.get(this.#keys.hostStatus(hostId)),
      this.#redis.hget(this.#keys.hosts(), hostId),
      this.#redis.exists(this.#keys.drain(hostId)),
      this.#ledger.get(hostId),
    ]);
    const raw = live ?? last;
    if (raw === null) return undefined;
    const parsed = HostStatus.safeParse(JSON.parse(raw));
    if (!parsed.success) return undefined;
    return { status: parsed.data, up: live !== null, draining: drained === 1 || parsed.data.draining, allocation };
  }

  /** Every host ever registered, up or down, sorted by id. */
  async list(): Promise<HostView[]> {
    const ids = (await this.#redis.hkeys(this.#keys.hosts())).sort();
    const views = await Promise.all(ids.map((id) => this.get(id)));
    return views.filter((v): v is HostView => v !== undefined);
  }

  /** Forgets a host entirely. */
  async remove(hostId: string): Promise<void> {
    await this.#redis
      .multi()
      .del(this.#keys.hostStatus(hostId))
      .hdel(this.#keys.hosts(), hostId)
      .del(this.#keys.drain(hostId))
      .exec();
  }

  /**
   * Asks the worker of a host to reconcile now (with `deleteOrphans`, also to remove the orphans it
   * finds) and waits for its answer. HOST_NOT_FOUND when no worker of that host listens;
   * COMMAND_TIMEOUT when it does not answer within `timeoutMs`.
   */
  async requestReconcile(
    hostId: string,
    options: { deleteOrphans: boolean; timeoutMs?: number },
  ): Promise<ReconcileResult> {
    const request: ReconcileRequest = { id: randomUUID(), deleteOrphans: options.deleteOrphans };
    const timeoutMs = options.timeoutMs ?? DEFAULT_RECONCILE_TIMEOUT_MS;
    const listeners = await this.#redis.publish(this.#keys.reconcileChannel(hostId), JSON.stringify(request));
    if (listeners === 0) {
      throw new VirtfleetError("HOST_NOT_FOUND", `no worker of host "${hostId}" is up to reconcile; start it first`, {
        field: "host",
      });
    }
    const replyKey = this.#keys.reconcileReply(request.id);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const raw = await this.#redis.get(replyKey);
      if (raw !== null) {
        await this.#redis.del(replyKey);
        const parsed = ReconcileResult.safeParse(JSON.parse(raw));
        if (!parsed.success)
          throw new VirtfleetError("INTERNAL", `host "${hostId}" answered with a bad reconcile result`);
        return parsed.data;
      }
      if (Date.now() > deadline) {
        throw new VirtfleetError(
          "COMMAND_TIMEOUT",
          `host "${hostId}" did not answer the reconcile request within ${Math.round(timeoutMs / 1000)} s`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** A worker's answer to a reconcile request; kept a minute for the asker to read. */
  async replyReconcile(requestId: string, result: ReconcileResult): Promise<void> {
    await this.#redis.set(this.#keys.reconcileReply(requestId), JSON.stringify(result), "PX", 60_000);
  }
}
