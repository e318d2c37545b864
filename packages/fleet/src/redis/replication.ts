import { VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { closeRedis, quietErrors } from "./connection.js";
import type { RedisReplicationConfig } from "./redis-config.js";

/**
 * Closing Redis's asynchronous-replication window for what virtfleet acknowledges.
 *
 * A write Redis answered may still be only on the master: if the master dies before its replica
 * copied it, Sentinel promotes a replica without it. So before virtfleet answers a caller that its
 * request was taken (a 202 of the API, a JobHandle of the SDK), it waits until `minReplicas` replicas
 * hold everything written so far (`WAIT minReplicas timeoutMs`). `WAIT` only covers the writes of the
 * connection it runs on, and virtfleet writes on several (its own, BullMQ's): so each barrier first
 * writes a fence key on its own connection — the replication stream is one ordered log, and the fence
 * comes after every write that had finished before it — then WAITs there.
 *
 * Callers that arrive while a barrier is in flight share the next one (it starts when the current one
 * ends): a burst of requests costs one or two WAITs, and no WAIT queues behind another on the
 * connection. When fewer replicas acknowledge in time, {@link ReplicationBarrier.wait} throws
 * REPLICATION_TIMEOUT (retryable): the write may or may not survive a failover, so the caller retries
 * (with the same Idempotency-Key, or the same VM name, a retry never makes a second VM).
 */
export class ReplicationBarrier {
  readonly #config: RedisReplicationConfig | undefined;
  readonly #source: Redis;
  readonly #fenceKey: string;
  #redis: Redis | undefined;
  #current: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  /** `source` is duplicated (lazily) for the barrier's own connection. */
  constructor(source: Redis, fenceKey: string, config: RedisReplicationConfig | undefined) {
    this.#source = source;
    this.#fenceKey = fenceKey;
    this.#config = config;
  }

  /** Whether barriers do anything (REDIS_MIN_REPLICAS > 0). */
  get enabled(): boolean {
    return this.#config !== undefined && this.#config.minReplicas > 0;
  }

  /** Resolves once every write finished before this call is on `minReplicas` replicas. */
  wait(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.#current === undefined) {
      this.#current = this.#run().finally(() => {
        this.#current = undefined;
      });
      return this.#current;
    }
    // The barrier in flight may have sent its fence before this caller's writes finished: join the next.
    this.#next ??= this.#current
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.wait();
      });
    return this.#next;
  }

  async #run(): Promise<void> {
    const { minReplicas, timeoutMs } = this.#config as RedisReplicationConfig;
    this.#redis ??= quietErrors(
      this.#source.duplicate({ connectionName: "virtfleet-replication", enableAutoPipelining: false }),
    );
    const redis = this.#redis;
    let acked: number;
    try {
      await redis.set(this.#fenceKey, String(Date.now()), "PX", 60_000);
      acked = Number(await redis.wait(minReplicas, timeoutMs));
    } catch (error) {
      if (replicationError(error) === undefined) throw error;
      acked = 0;
    }
    if (acked < minReplicas)
      throw new VirtfleetError(
        "REPLICATION_TIMEOUT",
        `only ${acked} of ${minReplicas} Redis replica(s) confirmed the write within ${timeoutMs} ms: it may be lost if the master fails now; retry the request (with the same Idempotency-Key)`,
        { retryable: true },
      );
  }

  async close(): Promise<void> {
    const r = this.#redis;
    this.#redis = undefined;
    if (r === undefined) return;
    await closeRedis(r);
  }
}

/**
 * REPLICATION_TIMEOUT for Redis's refusal of a write when too few replicas are connected
 * (`min-replicas-to-write`: NOREPLICAS); undefined for any other error. Nothing was written: a retry is safe.
 */
export function replicationError(error: unknown): VirtfleetError | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (!/\bNOREPLICAS\b/.test(message)) return undefined;
  return new VirtfleetError(
    "REPLICATION_TIMEOUT",
    "Redis refused the write: too few replicas are connected to the master (min-replicas-to-write); nothing was written, retry the request",
    { retryable: true },
  );
}
