import { HostStatus } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";

export interface HostView {
  status: HostStatus;
  /** False when the heartbeat has expired. */
  up: boolean;
}

/** Hosts publish their status with a TTL; a host whose status expired is down. */
export class HostRegistry {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
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
    const [live, last] = await Promise.all([
      this.#redis.get(this.#keys.hostStatus(hostId)),
      this.#redis.hget(this.#keys.hosts(), hostId),
    ]);
    const raw = live ?? last;
    if (raw === null) return undefined;
    const parsed = HostStatus.safeParse(JSON.parse(raw));
    return parsed.success ? { status: parsed.data, up: live !== null } : undefined;
  }

  /** Every host ever registered, up or down, sorted by id. */
  async list(): Promise<HostView[]> {
    const ids = (await this.#redis.hkeys(this.#keys.hosts())).sort();
    const views = await Promise.all(ids.map((id) => this.get(id)));
    return views.filter((v): v is HostView => v !== undefined);
  }

  /** Forgets a host entirely. */
  async remove(hostId: string): Promise<void> {
    await this.#redis.multi().del(this.#keys.hostStatus(hostId)).hdel(this.#keys.hosts(), hostId).exec();
  }
}
