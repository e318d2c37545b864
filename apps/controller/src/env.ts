import { DEFAULT_LOG_LEVEL, LogLevel, toValidationError } from "@virtfleet/core";
import { KeyPrefix, type RedisConfig, RedisEnv, redisConfigFromParsedEnv } from "@virtfleet/fleet";
import { ControllerEnv } from "@virtfleet/labs";
import { z } from "zod";

/** virtfleet-controller's whole configuration, read once at start. */
export const ControllerAppEnv = z.object({
  /** REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD(_FILE), REDIS_TLS_*_FILE: one schema for every component. */
  ...RedisEnv.shape,
  VIRTFLEET_PREFIX: KeyPrefix,
  ...ControllerEnv.shape,
  LOG_LEVEL: LogLevel.default(DEFAULT_LOG_LEVEL),
});
/** The parsed variables, and the Redis configuration built from them (password and TLS files read). */
export type ControllerAppEnv = z.infer<typeof ControllerAppEnv> & { redis: RedisConfig };

export function parseControllerEnv(env: NodeJS.ProcessEnv): ControllerAppEnv {
  const result = ControllerAppEnv.safeParse(env);
  if (!result.success) throw toValidationError(result.error);
  return { ...result.data, redis: redisConfigFromParsedEnv(result.data) };
}
