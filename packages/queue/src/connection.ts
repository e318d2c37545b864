import { Redis, type RedisOptions } from "ioredis";

export interface RedisConnectionOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…` for TLS. */
  url: string;
  /** Shown in `CLIENT LIST`. */
  connectionName?: string;
  /** Extra ioredis options (TLS certificates, Sentinel, …). */
  redisOptions?: RedisOptions;
}

/**
 * A Redis connection fit for BullMQ and for virtfleet's own keys: commands wait (never fail) while
 * Redis is away and the client reconnects by itself with a capped backoff.
 */
export function createRedis(options: RedisConnectionOptions): Redis {
  const redis = new Redis(options.url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    // Commands issued in the same tick travel in one round trip: many concurrent creates or
    // progress reports cost a few round trips, not one each.
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3000),
    ...(options.connectionName === undefined ? {} : { connectionName: options.connectionName }),
    ...options.redisOptions,
  });
  quietErrors(redis);
  return redis;
}

/**
 * Connection errors are expected while Redis restarts: the client reconnects and replays its
 * commands. Without a listener, ioredis would print each one as "unhandled".
 */
export function quietErrors(redis: Redis, onError?: (error: Error) => void): Redis {
  redis.on("error", (error: Error) => onError?.(error));
  return redis;
}

/** Closes a connection: QUIT when it is up, disconnect otherwise. Never throws. */
export async function closeRedis(redis: Redis): Promise<void> {
  try {
    if (redis.status === "ready") await redis.quit();
    else redis.disconnect();
  } catch {
    redis.disconnect();
  }
}
