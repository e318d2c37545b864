import { readFileSync } from "node:fs";
import { toValidationError, ValidationError } from "@virtfleet/core";
import type { RedisOptions } from "ioredis";
import { z } from "zod";

/** Where every component looks for Redis when nothing is configured. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/** The master group name sentinels watch when REDIS_SENTINEL_NAME is not set. */
export const DEFAULT_SENTINEL_NAME = "virtfleet";
/** A sentinel's port when an entry of REDIS_SENTINELS gives none. */
export const DEFAULT_SENTINEL_PORT = 26379;
/** Replicas an acknowledged write waits for (`WAIT`): 0 = none (a single Redis). */
export const DEFAULT_MIN_REPLICAS = 0;
/** How long an acknowledged write waits for its replicas before the caller gets REPLICATION_TIMEOUT. */
export const DEFAULT_WAIT_TIMEOUT_MS = 1000;

/** One sentinel's address. */
export interface SentinelAddress {
  host: string;
  port: number;
}

/**
 * Redis Sentinel: the sentinels are asked which node is the master of `name`, and asked again after
 * each lost connection, so every connection follows a failover by itself. The data nodes' user,
 * password, database and TLS still come from the URL (and `username`/`password`/`tls`).
 */
export interface RedisSentinelConfig {
  sentinels: SentinelAddress[];
  /** The master group name (`sentinel monitor <name> …`). Default DEFAULT_SENTINEL_NAME. */
  name: string;
  /** ACL user and password on the sentinels themselves (`sentinel sentinel-user/-pass`, `requirepass`). */
  username?: string;
  password?: string;
  /** TLS to the sentinels (with the same CA / client certificate as the data nodes). */
  tls?: boolean;
}

/** How many replicas must hold an acknowledged write before virtfleet answers (see replication.ts). */
export interface RedisReplicationConfig {
  /** `WAIT <minReplicas> …` after an acknowledged write; 0 = no WAIT. */
  minReplicas: number;
  /** `WAIT … <timeoutMs>`. */
  timeoutMs: number;
}

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
 * BullMQ's. {@link redisOptions} is the one place that turns it into ioredis options, for a single
 * node (the URL) or a Sentinel set (`sentinel`).
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
  /** Sentinel: the master is found through these; the URL's host and port are then not used. */
  sentinel?: RedisSentinelConfig;
  /** Replicas an acknowledged write waits for. Absent: no WAIT. */
  replication?: RedisReplicationConfig;
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

/** `host`, `host:port`, `[v6]` or `[v6]:port` (the port defaults to DEFAULT_SENTINEL_PORT), or undefined when invalid. */
export function parseSentinelAddress(entry: string): SentinelAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9_.-]+))(?::(\d{1,5}))?$/.exec(entry.trim());
  if (m === null) return undefined;
  const port = m[3] === undefined ? DEFAULT_SENTINEL_PORT : Number(m[3]);
  if (port < 1 || port > 65_535) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

/** `REDIS_SENTINELS`: a comma-separated list of sentinel addresses; the message names the bad entry. */
export const SentinelList = z.string().transform((text, ctx) => {
  const entries = text
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "");
  if (entries.length === 0) {
    ctx.addIssue({ code: "custom", message: "must list at least one sentinel (host:port,host:port,…)" });
    return z.NEVER;
  }
  const out: SentinelAddress[] = [];
  for (const entry of entries) {
    const address = parseSentinelAddress(entry);
    if (address === undefined) {
      ctx.addIssue({
        code: "custom",
        message: `"${entry}" is not host:port (a name or IPv4 address, or [IPv6], and a port 1-65535)`,
      });
      return z.NEVER;
    }
    out.push(address);
  }
  return out;
});

const emptyIsUnset = (v: unknown) => (v === "" ? undefined : v);
const flag = z.preprocess(
  emptyIsUnset,
  z
    .enum(["0", "1", "true", "false", "yes", "no"], { message: "must be 1 or 0" })
    .transform((v) => v === "1" || v === "true" || v === "yes")
    .optional(),
);

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
  /** `host:port,host:port,…` (IPv6 as `[::1]:26379`): connect through Redis Sentinel. */
  REDIS_SENTINELS: z.preprocess(emptyIsUnset, SentinelList.optional()),
  REDIS_SENTINEL_NAME: z.preprocess(
    emptyIsUnset,
    z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,128}$/, "must be a master group name (letters, digits, . _ -)")
      .default(DEFAULT_SENTINEL_NAME),
  ),
  REDIS_SENTINEL_USERNAME: optionalText,
  REDIS_SENTINEL_PASSWORD: optionalText,
  REDIS_SENTINEL_PASSWORD_FILE: optionalPath,
  /** TLS to the sentinels, with the REDIS_TLS_* files. */
  REDIS_SENTINEL_TLS: flag,
  /** Replicas each acknowledged write waits for (`WAIT`); 0 = none. */
  REDIS_MIN_REPLICAS: z.preprocess(emptyIsUnset, z.coerce.number().int().min(0).max(64).default(DEFAULT_MIN_REPLICAS)),
  REDIS_WAIT_TIMEOUT_MS: z.preprocess(
    emptyIsUnset,
    z.coerce.number().int().min(1).max(60_000).default(DEFAULT_WAIT_TIMEOUT_MS),
  ),
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
  if (env.REDIS_SENTINEL_PASSWORD !== undefined && env.REDIS_SENTINEL_PASSWORD_FILE !== undefined)
    issues.push({
      field: "REDIS_SENTINEL_PASSWORD_FILE",
      message: "set either REDIS_SENTINEL_PASSWORD or REDIS_SENTINEL_PASSWORD_FILE, not both",
    });
  const sentinelTls = env.REDIS_SENTINEL_TLS === true;
  if (env.REDIS_SENTINELS === undefined)
    for (const field of [
      "REDIS_SENTINEL_USERNAME",
      "REDIS_SENTINEL_PASSWORD",
      "REDIS_SENTINEL_PASSWORD_FILE",
      "REDIS_SENTINEL_TLS",
    ] as const)
      if (env[field] !== undefined && env[field] !== false) issues.push({ field, message: "needs REDIS_SENTINELS" });
  for (const field of ["REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"] as const)
    if (env[field] !== undefined && !tls && !sentinelTls)
      issues.push({ field, message: "needs a rediss:// REDIS_URL (TLS) or REDIS_SENTINEL_TLS=1" });
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
  let sentinelPassword = env.REDIS_SENTINEL_PASSWORD;
  if (env.REDIS_SENTINEL_PASSWORD_FILE !== undefined) {
    sentinelPassword = readVarFile("REDIS_SENTINEL_PASSWORD_FILE", env.REDIS_SENTINEL_PASSWORD_FILE).replace(
      /\r?\n$/,
      "",
    );
    if (sentinelPassword === "")
      throw new ValidationError([{ field: "REDIS_SENTINEL_PASSWORD_FILE", message: "the file is empty" }]);
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
    ...(env.REDIS_SENTINELS === undefined
      ? {}
      : {
          sentinel: {
            sentinels: env.REDIS_SENTINELS,
            name: env.REDIS_SENTINEL_NAME,
            ...(env.REDIS_SENTINEL_USERNAME === undefined ? {} : { username: env.REDIS_SENTINEL_USERNAME }),
            ...(sentinelPassword === undefined ? {} : { password: sentinelPassword }),
            ...(sentinelTls ? { tls: true } : {}),
          },
        }),
    ...(env.REDIS_MIN_REPLICAS === 0
      ? {}
      : { replication: { minReplicas: env.REDIS_MIN_REPLICAS, timeoutMs: env.REDIS_WAIT_TIMEOUT_MS } }),
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
 * With `sentinel`, ioredis asks the sentinels for the master (and again after each lost connection);
 * the URL's host and port are then unused, its user, password, database and `rediss://` (TLS to the
 * data nodes) still apply. `failoverDetector` makes each connection leave a demoted master as soon as
 * the sentinels announce `+switch-master`, rather than when it next fails.
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
  const common: RedisOptions = {
    ...(db === "" ? {} : { db: Number(db) }),
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(u.protocol === "rediss:" ? { tls: { ...config.tls } } : {}),
  };
  const sentinel = config.sentinel;
  if (sentinel !== undefined) {
    if (sentinel.sentinels.length === 0)
      throw new ValidationError([{ field: "REDIS_SENTINELS", message: "must list at least one sentinel" }]);
    return {
      sentinels: sentinel.sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: sentinel.name,
      role: "master",
      failoverDetector: true,
      ...(sentinel.username === undefined ? {} : { sentinelUsername: sentinel.username }),
      ...(sentinel.password === undefined ? {} : { sentinelPassword: sentinel.password }),
      ...(sentinel.tls === true ? { sentinelTLS: { ...config.tls } } : {}),
      ...(u.protocol === "rediss:" ? { enableTLSForSentinelMode: true } : {}),
      ...common,
    };
  }
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: u.port === "" ? 6379 : Number(u.port),
    ...common,
  };
}

/** Where a config points, for messages: scheme, host, port and database; never the credentials. */
export function describeRedis(config: RedisConfig): string {
  try {
    const u = new URL(config.url);
    const user = config.username ?? (u.username === "" ? undefined : decodeURIComponent(u.username));
    const where =
      config.sentinel === undefined
        ? u.host
        : `${config.sentinel.name}@sentinels(${config.sentinel.sentinels.map((s) => (s.host.includes(":") ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`)).join(",")})`;
    return `${u.protocol}//${user === undefined ? "" : `${encodeURIComponent(user)}@`}${where}${u.pathname === "/" ? "" : u.pathname}`;
  } catch {
    return "(an invalid Redis URL)";
  }
}
