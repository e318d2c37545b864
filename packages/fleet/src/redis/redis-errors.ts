/**
 * Errors of Redis connections, made safe to log and clear to read.
 *
 * ioredis attaches the failed command to its reply errors (`error.command = {name, args}`): an AUTH
 * refused at connect carries the password in `args`, and any logger that prints the error's own
 * properties (pino does) writes it out. {@link scrubRedisError} removes it in place, from every
 * connection virtfleet makes (see connection.ts); {@link redactError} is the same for loggers, for
 * errors of connections made elsewhere (BullMQ's own duplicates).
 */

export const REDACTED = "[redacted]";

/** Commands whose arguments can hold a secret. */
const SECRET_COMMANDS = new Set(["auth", "hello", "acl", "config", "migrate"]);

/** `scheme://user:password@` in any text. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/]*@/gi;

/** Text with the credentials of any URL in it replaced. */
export function redactUrls(text: string): string {
  return text.replace(URL_CREDENTIALS, `$1${REDACTED}@`);
}

interface WithCommand {
  command?: { name?: unknown; args?: unknown };
  message?: unknown;
  stack?: unknown;
  cause?: unknown;
}

/** Removes secrets from an error of a Redis connection, in place (and from its causes). Returns it. */
export function scrubRedisError<T>(error: T, depth = 0): T {
  if (typeof error !== "object" || error === null || depth > 4) return error;
  const e = error as WithCommand;
  const command = e.command;
  if (typeof command === "object" && command !== null && Array.isArray(command.args)) {
    const name = String(command.name ?? "").toLowerCase();
    if (SECRET_COMMANDS.has(name)) command.args = command.args.map(() => REDACTED);
  }
  try {
    if (typeof e.message === "string") e.message = redactUrls(e.message);
    if (typeof e.stack === "string") e.stack = redactUrls(e.stack);
  } catch {
    // read-only properties: left as they are
  }
  if (e.cause !== undefined) scrubRedisError(e.cause, depth + 1);
  return error;
}

/**
 * A copy of a logged value with Redis secrets removed, for a logger's `err` serializer (the original
 * is left as it is).
 */
export function redactError(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const copy = Object.create(Object.getPrototypeOf(value) as object) as Error & WithCommand;
  for (const key of Object.getOwnPropertyNames(value)) {
    (copy as unknown as Record<string, unknown>)[key] = (value as unknown as Record<string, unknown>)[key];
  }
  const command = (value as WithCommand).command;
  if (typeof command === "object" && command !== null) copy.command = { ...command };
  if (value.cause !== undefined) copy.cause = redactError(value.cause);
  return scrubRedisError(copy);
}

/** Paths a logger must never print: passwords in logged options or configs. For pino's `redact`. */
export const REDACT_PATHS = [
  "password",
  "*.password",
  "*.*.password",
  "redis.password",
  "options.password",
  "redisOptions.password",
  "*.redisOptions.password",
];

const AUTH_FAILURE = /^(WRONGPASS|NOAUTH|NOPERM)\b|invalid password|invalid username-password/i;
const TLS_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Redis refused the credentials (user, password or ACL). */
export function isRedisAuthError(error: unknown): boolean {
  return error instanceof Error && AUTH_FAILURE.test(error.message);
}

/**
 * One line that says what is wrong with a Redis connection and which variables to check; never a
 * secret.
 */
export function explainRedisError(error: unknown): string {
  const e = error instanceof Error ? error : new Error(String(error));
  const message = redactUrls(e.message);
  if (isRedisAuthError(e))
    return `Redis refused the credentials (${message}): check REDIS_USERNAME and REDIS_PASSWORD / REDIS_PASSWORD_FILE`;
  const code = (e as NodeJS.ErrnoException).code;
  if ((code !== undefined && TLS_CODES.has(code)) || /certificate|ssl|tls/i.test(message))
    return `TLS with Redis failed (${message}): check REDIS_TLS_CA_FILE and that REDIS_URL names the certificate's host`;
  return message;
}
