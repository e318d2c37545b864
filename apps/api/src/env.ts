import { toValidationError } from "@virtfleet/core";
import { type RedisConfig, RedisEnv, redisConfigFromParsedEnv } from "@virtfleet/queue";
import { z } from "zod";

/** The API server's configuration, read once at start. */
export const ApiEnv = z.object({
  /** REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD(_FILE), REDIS_TLS_*_FILE: one schema for every component. */
  ...RedisEnv.shape,
  VIRTFLEET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)
    .default("virtfleet"),
  VIRTFLEET_API_HOST: z.string().min(1).default("127.0.0.1"),
  VIRTFLEET_API_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  /** JSON: [{"id", "token" or "tokenSha256", "scopes", "tenant", "quota"?, "rateLimit"?}] */
  VIRTFLEET_API_TOKENS_FILE: z.string().min(1, "is required: the JSON file of API tokens"),
  /** HMAC-SHA256 key for webhook signatures. */
  VIRTFLEET_WEBHOOK_SECRET: z.string().min(16).optional(),
  VIRTFLEET_IDEMPOTENCY_TTL_SEC: z.coerce.number().int().min(60).default(86_400),
  VIRTFLEET_API_BODY_LIMIT: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
});
/** The parsed variables, and the Redis configuration built from them (password and TLS files read). */
export type ApiEnv = z.infer<typeof ApiEnv> & { redis: RedisConfig };

export function parseApiEnv(env: NodeJS.ProcessEnv): ApiEnv {
  const result = ApiEnv.safeParse(env);
  if (!result.success) throw toValidationError(result.error);
  return { ...result.data, redis: redisConfigFromParsedEnv(result.data) };
}
