import { DEFAULT_LOG_LEVEL, LogLevel, toValidationError } from "@virtfleet/core";
import {
  DEFAULT_CONSOLE_TIMEOUT_MS,
  KeyPrefix,
  type RedisConfig,
  RedisEnv,
  redisConfigFromParsedEnv,
} from "@virtfleet/fleet";
import {
  DEFAULT_API_HOST,
  DEFAULT_API_PORT,
  DEFAULT_BODY_LIMIT,
  DEFAULT_IDEMPOTENCY_TTL_SEC,
  DEFAULT_MAX_STREAMS_PER_TOKEN,
  DEFAULT_METRICS_AUTH,
  DEFAULT_STREAM_CONNECTIONS,
  DEFAULT_WEBHOOK_CONCURRENCY,
  MetricsAuth,
} from "@virtfleet/server";
import { z } from "zod";

/** The API server's configuration, read once at start. */
export const ApiEnv = z.object({
  /** REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD(_FILE), REDIS_TLS_*_FILE: one schema for every component. */
  ...RedisEnv.shape,
  VIRTFLEET_PREFIX: KeyPrefix,
  VIRTFLEET_API_HOST: z.string().min(1).default(DEFAULT_API_HOST),
  VIRTFLEET_API_PORT: z.coerce.number().int().min(0).max(65535).default(DEFAULT_API_PORT),
  /**
   * JSON: [{"id", "token" or "tokenSha256", "scopes", "tenant", "quota"?, "rateLimit"?, "networks"?,
   * "webhookSecret"?}]
   */
  VIRTFLEET_API_TOKENS_FILE: z.string().min(1, "is required: the JSON file of API tokens"),
  /** HMAC-SHA256 key for the webhooks of tenants without a `webhookSecret` of their own. */
  VIRTFLEET_WEBHOOK_SECRET: z.string().min(16).optional(),
  /** 1: callback URLs may reach loopback, private and link-local addresses (never metadata services). */
  VIRTFLEET_WEBHOOK_ALLOW_PRIVATE: z
    .enum(["0", "1", "false", "true"])
    .default("0")
    .transform((v) => v === "1" || v === "true"),
  /** Webhook deliveries in flight at once. */
  VIRTFLEET_WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(1024).default(DEFAULT_WEBHOOK_CONCURRENCY),
  VIRTFLEET_IDEMPOTENCY_TTL_SEC: z.coerce.number().int().min(60).default(DEFAULT_IDEMPOTENCY_TTL_SEC),
  VIRTFLEET_API_BODY_LIMIT: z.coerce.number().int().min(1024).default(DEFAULT_BODY_LIMIT),
  /** Redis connections shared by every open event stream (SSE). */
  VIRTFLEET_API_STREAM_CONNECTIONS: z.coerce.number().int().min(1).max(64).default(DEFAULT_STREAM_CONNECTIONS),
  /** Event streams one token may hold open at once; more get 429 RATE_LIMITED. */
  VIRTFLEET_API_MAX_STREAMS_PER_TOKEN: z.coerce.number().int().min(1).default(DEFAULT_MAX_STREAMS_PER_TOKEN),
  /** `token`: /metrics needs a bearer token with `metrics:read` (or admin); `none`: open to anyone who reaches it. */
  VIRTFLEET_METRICS_AUTH: MetricsAuth.default(DEFAULT_METRICS_AUTH),
  /** Serve /metrics on its own listener at this port (and not on the API's); unset: on the API's. */
  VIRTFLEET_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /** The address of the /metrics listener (with VIRTFLEET_METRICS_PORT). Default: VIRTFLEET_API_HOST. */
  VIRTFLEET_METRICS_HOST: z.string().min(1).optional(),
  /** How long `GET /v1/vms/{name}/console` waits for the VM's host's worker (then 504 HOST_TIMEOUT). */
  VIRTFLEET_API_CONSOLE_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(DEFAULT_CONSOLE_TIMEOUT_MS),
  LOG_LEVEL: LogLevel.default(DEFAULT_LOG_LEVEL),
});
/** The parsed variables, and the Redis configuration built from them (password and TLS files read). */
export type ApiEnv = z.infer<typeof ApiEnv> & { redis: RedisConfig };

export function parseApiEnv(env: NodeJS.ProcessEnv): ApiEnv {
  const result = ApiEnv.safeParse(env);
  if (!result.success) throw toValidationError(result.error);
  return { ...result.data, redis: redisConfigFromParsedEnv(result.data) };
}
