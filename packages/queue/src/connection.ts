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
  return new Redis(options.url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3000),
    ...(options.connectionName === undefined ? {} : { connectionName: options.connectionName }),
    ...options.redisOptions,
  });
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
