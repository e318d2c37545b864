import { readFileSync } from "node:fs";
import { toValidationError, ValidationError } from "@virtfleet/core";
import type { RedisOptions } from "ioredis";
import { z } from "zod";

/** Where every component looks for Redis when nothing is configured. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/** TLS material (PEM text, not paths) for a `rediss://` connection. */
export interface RedisTlsConfig {
  /** CA certificate(s) the server's certificate must chain to. Default: Node's trusted CAs. */
  ca?: string;
  /** Client certificate and its key, for servers that ask for one (`tls-auth-clients`). */
  cert?: string;
  key?: string;
}

/**
 * How every virtfleet component reaches Redis: built once (from the environment by
 * {@link redisConfigFromEnv}, or by a caller) and handed down to each connection, its duplicates and
 * BullMQ's. {@link redisOptions} is the one place that turns it into ioredis options; Sentinel
 * (`REDIS_SENTINELS`, `REDIS_SENTINEL_NAME`) is meant to become two more fields mapped there.
 */
export interface RedisConfig {
  /** `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. */
  url: string;
  /** ACL user; overrides the URL's. */
  username?: string;
  /** Password (of the ACL user, or `requirepass`); overrides the URL's. */
  password?: string;
  /** TLS material; TLS itself is on exactly when the URL is `rediss://`. */
  tls?: RedisTlsConfig;
}

/** Empty variables (`REDIS_PASSWORD=` in an env file) count as unset. */
const optionalText = z.preprocess((v) => (v === "" ? undefined : v), z.string().optional());
const optionalPath = z.preprocess((v) => (v === "" ? undefined : v), z.string().min(1).optional());

/** A URL Redis understands. The message never repeats the value: it may hold a password. */
export const RedisUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === "redis:" || u.protocol === "rediss:") && u.hostname !== "";
  } catch {
    return false;
  }
}, "must be a redis://[user:password@]host:port[/db] or rediss://… URL");

/** The Redis variables every component reads (worker, API, CLI); spread into each app's env schema. */
export const RedisEnv = z.object({
  REDIS_URL: z.preprocess((v) => (v === "" ? undefined : v), RedisUrl.default(DEFAULT_REDIS_URL)),
  REDIS_USERNAME: optionalText,
  REDIS_PASSWORD: optionalText,
  /** A file holding the password (its trailing newline dropped): better than the environment for services. */
  REDIS_PASSWORD_FILE: optionalPath,
  REDIS_TLS_CA_FILE: optionalPath,
  REDIS_TLS_CERT_FILE: optionalPath,
  REDIS_TLS_KEY_FILE: optionalPath,
});
export type RedisEnv = z.infer<typeof RedisEnv>;

function readVarFile(field: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
    throw new ValidationError([{ field, message: `cannot read ${file} (${code})` }]);
  }
}

/**
 * The Redis configuration from parsed {@link RedisEnv} values: checks that the variables agree and
 * reads the password and TLS files. Throws a ValidationError naming the variable.
 */
export function redisConfigFromParsedEnv(env: RedisEnv): RedisConfig {
  const issues: { field: string; message: string }[] = [];
  const tls = new URL(env.REDIS_URL).protocol === "rediss:";
  if (env.REDIS_PASSWORD !== undefined && env.REDIS_PASSWORD_FILE !== undefined)
    issues.push({
      field: "REDIS_PASSWORD_FILE",
      message: "set either REDIS_PASSWORD or REDIS_PASSWORD_FILE, not both",
    });
  for (const field of ["REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"] as const)
    if (env[field] !== undefined && !tls) issues.push({ field, message: "needs a rediss:// REDIS_URL (TLS)" });
  if ((env.REDIS_TLS_CERT_FILE === undefined) !== (env.REDIS_TLS_KEY_FILE === undefined))
    issues.push({
      field: env.REDIS_TLS_CERT_FILE === undefined ? "REDIS_TLS_CERT_FILE" : "REDIS_TLS_KEY_FILE",
      message: "a client certificate needs both REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE",
    });
  if (issues.length > 0) throw new ValidationError(issues);

  let password = env.REDIS_PASSWORD;
  if (env.REDIS_PASSWORD_FILE !== undefined) {
    password = readVarFile("REDIS_PASSWORD_FILE", env.REDIS_PASSWORD_FILE).replace(/\r?\n$/, "");
    if (password === "") throw new ValidationError([{ field: "REDIS_PASSWORD_FILE", message: "the file is empty" }]);
  }
  const tlsConfig: RedisTlsConfig = {};
  if (env.REDIS_TLS_CA_FILE !== undefined) tlsConfig.ca = readVarFile("REDIS_TLS_CA_FILE", env.REDIS_TLS_CA_FILE);
  if (env.REDIS_TLS_CERT_FILE !== undefined)
    tlsConfig.cert = readVarFile("REDIS_TLS_CERT_FILE", env.REDIS_TLS_CERT_FILE);
  if (env.REDIS_TLS_KEY_FILE !== undefined) tlsConfig.key = readVarFile("REDIS_TLS_KEY_FILE", env.REDIS_TLS_KEY_FILE);
  return {
    url: env.REDIS_URL,
    ...(env.REDIS_USERNAME === undefined ? {} : { username: env.REDIS_USERNAME }),
    ...(password === undefined ? {} : { password }),
    ...(Object.keys(tlsConfig).length === 0 ? {} : { tls: tlsConfig }),
  };
}

/** The Redis configuration from the environment (`REDIS_*`). Throws a ValidationError naming the variable. */
export function redisConfigFromEnv(env: NodeJS.ProcessEnv = process.env): RedisConfig {
  const parsed = RedisEnv.safeParse(env);
  if (!parsed.success) throw toValidationError(parsed.error);
  return redisConfigFromParsedEnv(parsed.data);
}

/** A config from either form a caller may give: a whole {@link RedisConfig} or a bare URL (older callers). */
export function resolveRedisConfig(options: { redis?: RedisConfig; redisUrl?: string }): RedisConfig {
  if (options.redis !== undefined) return options.redis;
  if (options.redisUrl !== undefined) return { url: options.redisUrl };
  throw new ValidationError([{ field: "redis", message: "a Redis configuration (redis or redisUrl) is required" }]);
}

/**
 * ioredis options for a config: host, port, database, credentials and TLS. Explicit fields win over
 * the URL's. The URL itself is never handed to ioredis, so no message of it can carry the password.
 */
export function redisOptions(config: RedisConfig): RedisOptions {
  const parsed = RedisUrl.safeParse(config.url);
  if (!parsed.success)
    throw new ValidationError([{ field: "REDIS_URL", message: parsed.error.issues[0]?.message ?? "invalid" }]);
  const u = new URL(parsed.data);
  const db = u.pathname.replace(/^\//, "");
  if (db !== "" && !/^\d+$/.test(db))
    throw new ValidationError([{ field: "REDIS_URL", message: "the path must be a database number (/0, /1, …)" }]);
  const username = config.username ?? (u.username === "" ? undefined : decodeURIComponent(u.username));
  const password = config.password ?? (u.password === "" ? undefined : decodeURIComponent(u.password));
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: u.port === "" ? 6379 : Number(u.port),
    ...(db === "" ? {} : { db: Number(db) }),
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(u.protocol === "rediss:" ? { tls: { ...config.tls } } : {}),
  };
}

/** Where a config points, for messages: scheme, host, port and database; never the credentials. */
export function describeRedis(config: RedisConfig): string {
  try {
    const u = new URL(config.url);
    const user = config.username ?? (u.username === "" ? undefined : decodeURIComponent(u.username));
    return `${u.protocol}//${user === undefined ? "" : `${encodeURIComponent(user)}@`}${u.host}${u.pathname === "/" ? "" : u.pathname}`;
  } catch {
    return "(an invalid Redis URL)";
  }
}
