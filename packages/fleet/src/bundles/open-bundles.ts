/**
 * Open bundles: creates asked for in a later call join a host's bundle that still waits in its queue
 * (never started, room left), instead of becoming another BullMQ job. When creates arrive faster than
 * a host takes them (a burst over a big fleet gives each host one create per call), BullMQ's own add
 * (~30-45 µs of Redis per job) is then paid once per bundle, not once per call and host.
 *
 * A producer remembers the last bundle it added to each host's queue (a hint, in memory) and asks
 * join-bundle-3.lua to append to it: Redis checks that the bundle is still in the queue's wait list,
 * was never started and its host was not judged lost, atomically with BullMQ's scripts (a worker
 * takes a bundle and reads its data in one script), so a create joins a bundle only before any
 * worker has it; otherwise nothing is written and the producer adds a bundle of its own.
 */
import type { JobData } from "@virtfleet/core";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { LuaCommand } from "../redis/lua.js";
import { BUNDLE_MAX_JOBS, isBundleId, jobsInQueueEntry } from "./bundle.js";

const joinBundle = new LuaCommand(new URL("./commands/join-bundle-3.lua", import.meta.url));

/** The field of a joined bundle's BullMQ job hash that holds its job count (its id holds the first). */
export const BUNDLE_COUNT_FIELD = "vfJobs";

export class OpenBundles {
  /** Host id -> the id of the last bundle this producer added to its queue. */
  readonly #last = new Map<string, string>();
  readonly #max: number;

  constructor(maxJobs = BUNDLE_MAX_JOBS) {
    this.#max = maxJobs;
  }

  /** The bundle of a host's queue that creates may try to join, if this producer added one. */
  last(hostId: string): string | undefined {
    return this.#last.get(hostId);
  }

  /** Remembers the bundle just added to a host's queue (the one later creates try to join). */
  added(hostId: string, bundleId: string): void {
    this.#last.set(hostId, bundleId);
  }

  /**
   * Appends `jobs` to the host's last bundle in `queue` (the script runs on `redis`), if it still
   * waits never started and has room for them all; true when they joined it. Otherwise nothing is
   * written and the hint is dropped.
   */
  async join(redis: Redis, keys: Keys, hostId: string, queue: Queue, jobs: readonly JobData[]): Promise<boolean> {
    const bundleId = this.#last.get(hostId);
    if (bundleId === undefined || jobs.length === 0) return false;
    const count = (await joinBundle.run(
      redis,
      [queue.keys.wait as string, queue.toKey(bundleId), keys.hostDown(hostId)],
      [bundleId, this.#max, jobs.length, jobs.map((j) => JSON.stringify(j)).join(",")],
    )) as number;
    if (count > 0) return true;
    if (this.#last.get(hostId) === bundleId) this.#last.delete(hostId);
    return false;
  }
}

/**
 * How many of our jobs each of a queue's BullMQ jobs carries: a bundle's count (its `vfJobs` field
 * once others joined it, else the count in its id), 1 for any other job. Read in one round trip.
 */
export async function jobsInQueueEntries(redis: Redis, queue: Queue, ids: readonly string[]): Promise<number[]> {
  const bundles = ids.filter(isBundleId);
  if (bundles.length === 0) return ids.map(() => 1);
  const pipeline = redis.pipeline();
  for (const id of bundles) pipeline.hget(queue.toKey(id), BUNDLE_COUNT_FIELD);
  const replies = (await pipeline.exec()) ?? [];
  const joined = new Map<string, number>();
  for (const [i, id] of bundles.entries()) {
    const n = Number(replies[i]?.[1] ?? Number.NaN);
    if (Number.isInteger(n) && n > 0) joined.set(id, n);
  }
  return ids.map((id) => joined.get(id) ?? jobsInQueueEntry(id));
}
