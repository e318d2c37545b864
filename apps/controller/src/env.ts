import { toValidationError } from "@virtfleet/core";
import { type RedisConfig, RedisEnv, redisConfigFromParsedEnv } from "@virtfleet/fleet";
import { ControllerEnv } from "@virtfleet/labs";
import { z } from "zod";

/** virtfleet-controller's whole configuration, read once at start. */
export const ControllerAppEnv = z.object({
  /** REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD(_FILE), REDIS_TLS_*_FILE: one schema for every component. */
  ...RedisEnv.shape,
  VIRTFLEET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)
    .default("virtfleet"),
  ...ControllerEnv.shape,
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
});
/** The parsed variables, and the Redis configuration built from them (password and TLS files read). */
export type ControllerAppEnv = z.infer<typeof ControllerAppEnv> & { redis: RedisConfig };

export function parseControllerEnv(env: NodeJS.ProcessEnv): ControllerAppEnv {
  const result = ControllerAppEnv.safeParse(env);
  if (!result.success) throw toValidationError(result.error);
  return { ...result.data, redis: redisConfigFromParsedEnv(result.data) };
}
