import { Redis, type RedisOptions } from "ioredis";
import { type RedisConfig, redisOptions } from "./redis-config.js";
import { scrubRedisError } from "./redis-errors.js";

export interface RedisConnectionOptions {
  /** The whole configuration (credentials, TLS). Either this or `url`. */
  config?: RedisConfig;
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…` for TLS. Short for `config: { url }`. */
  url?: string;
  /** Shown in `CLIENT LIST`. */
  connectionName?: string;
  /** Extra ioredis options; they win over the config's. */
  redisOptions?: RedisOptions;
  /** Called with each connection error (its secrets already removed). */
  onError?: (error: Error) => void;
}

/**
 * A Redis connection fit for BullMQ and for virtfleet's own keys: commands wait (never fail) while
 * Redis is away and the client reconnects by itself with a capped backoff. Its duplicates
 * (`redis.duplicate()`, also BullMQ's) keep the credentials and TLS options.
 */
export function createRedis(options: RedisConnectionOptions): Redis {
  const config = options.config ?? (options.url === undefined ? undefined : { url: options.url });
  if (config === undefined) throw new TypeError("createRedis: a config or url is required");
  const redis = new Redis({
    ...redisOptions(config),
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    // Commands issued in the same tick travel in one round trip: many concurrent creates or
    // progress reports cost a few round trips, not one each.
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 3000),
    ...(options.connectionName === undefined ? {} : { connectionName: options.connectionName }),
    ...options.redisOptions,
  });
  quietErrors(redis, options.onError);
  return redis;
}

/**
 * Connection errors are expected while Redis restarts: the client reconnects and replays its
 * commands. Without a listener, ioredis would print each one as "unhandled". Every connection
 * virtfleet makes goes through here (duplicates too): the first listener removes the secrets ioredis
 * puts into errors (the password of a refused AUTH), before any command's rejection is seen.
 */
export function quietErrors(redis: Redis, onError?: (error: Error) => void): Redis {
  redis.prependListener("error", (error: Error) => {
    scrubRedisError(error);
  });
  redis.on("error", (error: Error) => onError?.(error));
  return redis;
}

/**
 * Calls `report` with a connection's errors, once per distinct message until the connection is
 * ready again: a refused password or an untrusted certificate gives one log line, not one a retry.
 */
export function reportRedisErrors(redis: Redis, report: (error: Error) => void): Redis {
  let last: string | undefined;
  redis.on("ready", () => {
    last = undefined;
  });
  redis.on("error", (error: Error) => {
    if (error.message === last) return;
    last = error.message;
    report(error);
  });
  return redis;
}

/**
 * Closes a connection: QUIT when it is up, then disconnect in every case. Never throws. The
 * disconnect also ends what QUIT leaves open: through Sentinel, ioredis's failover detector keeps a
 * subscription to each sentinel (`+switch-master`) that only disconnect closes; left open, it keeps
 * the process alive (a CLI command that never exits).
 */
export async function closeRedis(redis: Redis): Promise<void> {
  try {
    if (redis.status === "ready") await redis.quit();
  } catch {
    // closed below all the same
  }
  redis.disconnect();
}
