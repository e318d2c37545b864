import { randomUUID } from "node:crypto";
import { HostStatus, type ReconcileRequest, ReconcileResult, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { type Allocation, CapacityLedger, toAllocation, withClasses } from "../placement/capacity-ledger.js";
import { hostClass } from "../placement/host-class.js";
import type { Keys } from "../redis/keys.js";
import { LuaCommand } from "../redis/lua.js";

const HOST_INDEX = new LuaCommand(new URL("../placement/commands/host-index-7.lua", import.meta.url));

const ROOM_FIELDS = ["capMem", "capVcpus", "capDisk", "mem", "vcpus", "disk"] as const;

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

/** JSON.parse, or undefined for text that is not JSON (then the schema refuses it). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A host's view from its live status (null: expired), its last status, drain mark and allocation. */
function toView(
  live: string | null,
  last: string | null,
  drained: boolean,
  allocation: Allocation,
): HostView | undefined {
  const raw = live ?? last;
  if (raw === null) return undefined;
  const parsed = HostStatus.safeParse(JSON.parse(raw));
  if (!parsed.success) return undefined;
  return { status: parsed.data, up: live !== null, draining: drained || parsed.data.draining, allocation };
}

/** Hosts publish their status with a TTL; a host whose status expired is down. */
export class HostRegistry {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #ledger: CapacityLedger;
  /** The class each host was last filed under by this registry (a guess: the script checks it). */
  readonly #classOf = new Map<string, string>();

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
    this.#ledger = new CapacityLedger(redis, keys);
  }

  /** Marks a host drained (it finishes what it runs, nothing new is placed on it), or undrains it. */
  async drain(hostId: string, on = true): Promise<void> {
    const k = this.#keys;
    if (on) await this.#redis.sadd(k.placementDrained(), hostId);
    else await this.#redis.multi().srem(k.placementDrained(), hostId).del(k.drain(hostId)).exec();
  }

  /**
   * Drains (`on`) or undrains a known host and answers its view afterwards: what `virtfleet hosts
   * drain|undrain` and `POST /v1/hosts/{id}/drain|undrain` do. HOST_NOT_FOUND (field `host`) when
   * the fleet has never seen the host.
   */
  async setDrained(hostId: string, on: boolean): Promise<HostView> {
    if ((await this.get(hostId)) === undefined)
      throw new VirtfleetError("HOST_NOT_FOUND", `no host "${hostId}" in the fleet`, { field: "host" });
    await this.drain(hostId, on);
    const view = await this.get(hostId);
    if (view === undefined) throw new VirtfleetError("HOST_NOT_FOUND", `host "${hostId}" went away`, { field: "host" });
    return view;
  }

  /**
   * Publishes a heartbeat that lives `ttlMs`: the status, the host up until then, and the host filed
   * in its eligibility class's free-room index (see host-index-7.lua).
   */
  async heartbeat(status: HostStatus, ttlMs: number): Promise<void> {
    const k = this.#keys;
    const hostId = status.hostId;
    const cls = hostClass(status);
    const json = JSON.stringify(status);
    await withClasses([this.#classOf.get(hostId) ?? cls], (classes) => {
      const believed = classes.at(-1) as string;
      return HOST_INDEX.run(
        this.#redis,
        [
          k.hostStatus(hostId),
          k.hosts(),
          k.placementHosts(),
          k.placementAlive(),
          k.placementFree(cls),
          k.placementFree(believed),
          k.placementClasses(),
        ],
        [hostId, json, ttlMs, cls, believed, status.draining ? "1" : "0", ""],
      );
    });
    this.#classOf.set(hostId, cls);
  }

  /** Removes the live status (the host stays listed, as down). */
  async markDown(hostId: string): Promise<void> {
    await this.#redis.multi().del(this.#keys.hostStatus(hostId)).zrem(this.#keys.placementAlive(), hostId).exec();
  }

  async get(hostId: string): Promise<HostView | undefined> {
    const [live, last, drained, allocation] = await Promise.all([
      this.#redis.get(this.#keys.hostStatus(hostId)),
      this.#redis.hget(this.#keys.hosts(), hostId),
      this.#redis.sismember(this.#keys.placementDrained(), hostId),
      this.#ledger.get(hostId),
    ]);
    return toView(live, last ?? null, drained === 1, allocation);
  }

  /**
   * Every host ever registered, up or down, sorted by id: the registry, the placement hash and the
   * drained set in one read, then the live statuses in one MGET (cheap at a thousand hosts).
   */
  async list(): Promise<HostView[]> {
    const k = this.#keys;
    const read = await this.#redis
      .multi()
      .hgetall(k.hosts())
      .hgetall(k.placementHosts())
      .smembers(k.placementDrained())
      .exec();
    const [registry, room, drainedList] = (read ?? []).map(([error, value]) => {
      if (error) throw error;
      return value;
    }) as [Record<string, string>, Record<string, string>, string[]];
    const ids = Object.keys(registry).sort();
    if (ids.length === 0) return [];
    const live = await this.#redis.mget(ids.map((id) => k.hostStatus(id)));
    const drained = new Set(drainedList);
    const views = ids.map((id, i) => {
      const fields = Object.fromEntries(ROOM_FIELDS.map((f) => [f, room[`${id}.${f}`]])) as Record<
        (typeof ROOM_FIELDS)[number],
        string | undefined
      >;
      return toView(live[i] ?? null, registry[id] ?? null, drained.has(id), toAllocation(fields));
    });
    return views.filter((v): v is HostView => v !== undefined);
  }

  /**
   * One status per eligibility class ever seen, by class id: the first host's of each class (hosts
   * of a class are alike for eligibility, see hostClass), kept by each heartbeat (host-index-7.lua).
   * What placement judges eligibility on: a read of the classes, not of every host.
   */
  async classes(): Promise<Map<string, HostStatus>> {
    const raw = await this.#redis.hgetall(this.#keys.placementClasses());
    const classes = new Map<string, HostStatus>();
    for (const [cls, json] of Object.entries(raw)) {
      const parsed = HostStatus.safeParse(parseJson(json));
      if (parsed.success) classes.set(cls, parsed.data);
    }
    return classes;
  }

  /** Forgets a host entirely (its claims stay with their VMs). */
  async remove(hostId: string): Promise<void> {
    const k = this.#keys;
    const cls = await this.#redis.hget(k.placementHosts(), `${hostId}.class`);
    const tx = this.#redis
      .multi()
      .del(k.hostStatus(hostId))
      .hdel(k.hosts(), hostId)
      .del(k.drain(hostId))
      .srem(k.placementDrained(), hostId)
      .zrem(k.placementAlive(), hostId)
      .hdel(k.placementHosts(), `${hostId}.class`);
    if (cls !== null) tx.zrem(k.placementFree(cls), hostId);
    await tx.exec();
    this.#classOf.delete(hostId);
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
