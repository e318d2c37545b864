import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";

/** A create job admitted this long ago and still not in its host's queue is taken as lost. Default 60 s. */
export const PENDING_JOB_TIMEOUT_MS = 60_000;

/**
 * Create jobs admitted (VM and job recorded, room and quota claimed) but not yet known to be in
 * their host's BullMQ queue. Admission adds a job here in the same atomic step that admits it; the
 * producer takes it out once the job is enqueued. A producer that dies (or fails) between the two
 * leaves the job here, and the fleet monitor's sweep ends it (HostMonitor.sweepPending in @virtfleet/agent), so no
 * ghost VM holds room, quota and its name for good.
 */
export class PendingJobs {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** The jobs are in their queues: they leave the set in one command. Returns how many were in it. */
  async enqueued(jobIds: readonly string[]): Promise<number> {
    return jobIds.length === 0 ? 0 : this.#redis.zrem(this.#keys.pendingJobs(), ...jobIds);
  }

  /** Takes one job out; true only for the one caller that did (so two sweeps never both end it). */
  async take(jobId: string): Promise<boolean> {
    return (await this.#redis.zrem(this.#keys.pendingJobs(), jobId)) === 1;
  }

  async has(jobId: string): Promise<boolean> {
    return (await this.#redis.zscore(this.#keys.pendingJobs(), jobId)) !== null;
  }

  /** Jobs admitted before `beforeMs` (epoch ms) and still pending, oldest first, at most `limit`. */
  async olderThan(beforeMs: number, limit = 1000): Promise<string[]> {
    return this.#redis.zrangebyscore(this.#keys.pendingJobs(), "-inf", `(${beforeMs}`, "LIMIT", 0, limit);
  }
}
