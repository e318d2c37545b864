import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_REDIS_URL,
  DEFAULT_SENTINEL_NAME,
  DEFAULT_WAIT_TIMEOUT_MS,
  describeRedis,
  redisConfigFromEnv,
  redisOptions,
} from "./redis-config.js";
import { explainRedisError, REDACTED, redactError, redactUrls, scrubRedisError } from "./redis-errors.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "vf-redis-config-"));
  await writeFile(path.join(dir, "password"), "from-the-file\n");
  await writeFile(path.join(dir, "empty"), "");
  await writeFile(path.join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n");
  await writeFile(path.join(dir, "cert.pem"), "CERT");
  await writeFile(path.join(dir, "key.pem"), "KEY");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("redisConfigFromEnv", () => {
  it("defaults to the local Redis without credentials", () => {
    expect(redisConfigFromEnv({})).toEqual({ url: DEFAULT_REDIS_URL });
    expect(redisConfigFromEnv({ REDIS_URL: "", REDIS_PASSWORD: "" })).toEqual({ url: DEFAULT_REDIS_URL });
  });

  it("reads the password file (without its newline), the user and the TLS files", () => {
    const f = (n: string) => path.join(dir, n);
    expect(
      redisConfigFromEnv({
        REDIS_URL: "rediss://redis.example:6380/2",
        REDIS_USERNAME: "virtfleet",
        REDIS_PASSWORD_FILE: f("password"),
        REDIS_TLS_CA_FILE: f("ca.pem"),
        REDIS_TLS_CERT_FILE: f("cert.pem"),
        REDIS_TLS_KEY_FILE: f("key.pem"),
      }),
    ).toEqual({
      url: "rediss://redis.example:6380/2",
      username: "virtfleet",
      password: "from-the-file",
      tls: { ca: expect.stringContaining("BEGIN CERTIFICATE"), cert: "CERT", key: "KEY" },
    });
  });

  it.each([
    [{ REDIS_URL: "not a url" }, "REDIS_URL"],
    [{ REDIS_URL: "http://127.0.0.1:6379" }, "REDIS_URL"],
    [{ REDIS_PASSWORD: "a", REDIS_PASSWORD_FILE: "/x" }, "REDIS_PASSWORD_FILE"],
    [{ REDIS_PASSWORD_FILE: "/nonexistent/redis.password" }, "REDIS_PASSWORD_FILE"],
    [{ REDIS_PASSWORD_FILE: "@empty" }, "REDIS_PASSWORD_FILE"],
    [{ REDIS_TLS_CA_FILE: "@ca.pem" }, "REDIS_TLS_CA_FILE"],
    [{ REDIS_URL: "rediss://h:1", REDIS_TLS_CA_FILE: "/nonexistent/ca.pem" }, "REDIS_TLS_CA_FILE"],
    [{ REDIS_URL: "rediss://h:1", REDIS_TLS_CERT_FILE: "@cert.pem" }, "REDIS_TLS_KEY_FILE"],
  ])("rejects %o naming %s", (input, field) => {
    const env = Object.fromEntries(
      Object.entries(input).map(([k, v]) => [k, v.startsWith("@") ? path.join(dir, v.slice(1)) : v]),
    );
    expect(() => redisConfigFromEnv(env)).toThrow(expect.objectContaining({ code: "INVALID_SPEC", field }));
  });

  it("never repeats a bad URL (it may hold a password) in its error", () => {
    expect(() => redisConfigFromEnv({ REDIS_URL: "http://u:hunter2-secret@h:1" })).toThrow(
      expect.not.objectContaining({ message: expect.stringContaining("hunter2-secret") }),
    );
  });
});

describe("Sentinel and replication variables", () => {
  it("parses the sentinel list (names, IPv4, [IPv6], default port) with the default master name", () => {
    expect(redisConfigFromEnv({ REDIS_SENTINELS: " s1.example:26380, 127.0.0.1:26381,[::1]:26382,s4 " })).toEqual({
      url: DEFAULT_REDIS_URL,
      sentinel: {
        name: DEFAULT_SENTINEL_NAME,
        sentinels: [
          { host: "s1.example", port: 26380 },
          { host: "127.0.0.1", port: 26381 },
          { host: "::1", port: 26382 },
          { host: "s4", port: 26379 },
        ],
      },
    });
  });

  it("reads the sentinel credentials (password file), the name, TLS and the replicas to wait for", () => {
    expect(
      redisConfigFromEnv({
        REDIS_URL: "rediss://api:pw@ignored:1/2",
        REDIS_SENTINELS: "127.0.0.1:26379",
        REDIS_SENTINEL_NAME: "fleet-a",
        REDIS_SENTINEL_USERNAME: "sentinel-user",
        REDIS_SENTINEL_PASSWORD_FILE: path.join(dir, "password"),
        REDIS_SENTINEL_TLS: "1",
        REDIS_TLS_CA_FILE: path.join(dir, "ca.pem"),
        REDIS_MIN_REPLICAS: "1",
      }),
    ).toMatchObject({
      sentinel: { name: "fleet-a", username: "sentinel-user", password: "from-the-file", tls: true },
      replication: { minReplicas: 1, timeoutMs: DEFAULT_WAIT_TIMEOUT_MS },
      tls: { ca: expect.stringContaining("CA") },
    });
    expect(redisConfigFromEnv({ REDIS_MIN_REPLICAS: "2", REDIS_WAIT_TIMEOUT_MS: "250" }).replication).toEqual({
      minReplicas: 2,
      timeoutMs: 250,
    });
    expect(redisConfigFromEnv({ REDIS_MIN_REPLICAS: "0" }).replication).toBeUndefined();
  });

  it.each([
    [{ REDIS_SENTINELS: "127.0.0.1:26379,bad host:1" }, "REDIS_SENTINELS", "bad host:1"],
    [{ REDIS_SENTINELS: "h:99999" }, "REDIS_SENTINELS", "h:99999"],
    [{ REDIS_SENTINELS: "[::1" }, "REDIS_SENTINELS", "[::1"],
    [{ REDIS_SENTINELS: "h:26379:1" }, "REDIS_SENTINELS", "h:26379:1"],
    [{ REDIS_SENTINELS: " , " }, "REDIS_SENTINELS", "at least one"],
    [{ REDIS_SENTINELS: "h", REDIS_SENTINEL_NAME: "two words" }, "REDIS_SENTINEL_NAME", "group name"],
    [{ REDIS_SENTINEL_PASSWORD: "x" }, "REDIS_SENTINEL_PASSWORD", "needs REDIS_SENTINELS"],
    [{ REDIS_SENTINEL_TLS: "1" }, "REDIS_SENTINEL_TLS", "needs REDIS_SENTINELS"],
    [{ REDIS_SENTINELS: "h", REDIS_SENTINEL_TLS: "maybe" }, "REDIS_SENTINEL_TLS", "1 or 0"],
    [
      { REDIS_SENTINELS: "h", REDIS_SENTINEL_PASSWORD: "a", REDIS_SENTINEL_PASSWORD_FILE: "/x" },
      "REDIS_SENTINEL_PASSWORD_FILE",
      "not both",
    ],
    [
      { REDIS_SENTINELS: "h", REDIS_SENTINEL_PASSWORD_FILE: "/nonexistent/p" },
      "REDIS_SENTINEL_PASSWORD_FILE",
      "cannot read",
    ],
    [{ REDIS_MIN_REPLICAS: "-1" }, "REDIS_MIN_REPLICAS", ""],
    [{ REDIS_MIN_REPLICAS: "one" }, "REDIS_MIN_REPLICAS", ""],
    [{ REDIS_WAIT_TIMEOUT_MS: "0" }, "REDIS_WAIT_TIMEOUT_MS", ""],
  ])("rejects %o naming %s", (env, field, text) => {
    expect(() => redisConfigFromEnv(env)).toThrow(
      expect.objectContaining({ code: "INVALID_SPEC", field, message: expect.stringContaining(text) }),
    );
  });

  it("lets the REDIS_TLS_* files serve TLS to the sentinels alone", () => {
    expect(
      redisConfigFromEnv({ REDIS_SENTINELS: "h", REDIS_SENTINEL_TLS: "1", REDIS_TLS_CA_FILE: path.join(dir, "ca.pem") })
        .tls?.ca,
    ).toContain("CA");
  });

  it("maps a Sentinel config to ioredis options: the URL gives the data nodes' user, db and TLS", () => {
    expect(
      redisOptions({
        url: "rediss://worker:pw@unused:1/4",
        tls: { ca: "CA" },
        sentinel: {
          sentinels: [{ host: "::1", port: 26379 }],
          name: "virtfleet",
          username: "su",
          password: "sp",
          tls: true,
        },
      }),
    ).toEqual({
      sentinels: [{ host: "::1", port: 26379 }],
      name: "virtfleet",
      role: "master",
      failoverDetector: true,
      sentinelUsername: "su",
      sentinelPassword: "sp",
      sentinelTLS: { ca: "CA" },
      enableTLSForSentinelMode: true,
      db: 4,
      username: "worker",
      password: "pw",
      tls: { ca: "CA" },
    });
    const plain = redisOptions({ url: "redis://h", sentinel: { sentinels: [{ host: "a", port: 1 }], name: "n" } });
    expect(plain).not.toHaveProperty("host");
    expect(plain).not.toHaveProperty("sentinelTLS");
    expect(plain).not.toHaveProperty("enableTLSForSentinelMode");
    expect(
      describeRedis({
        url: "redis://u:secret@h/1",
        sentinel: {
          sentinels: [
            { host: "::1", port: 2 },
            { host: "a", port: 3 },
          ],
          name: "n",
        },
      }),
    ).toBe("redis://u@n@sentinels([::1]:2,a:3)/1");
  });
});

describe("redisOptions", () => {
  it("takes host, port, database and credentials from the URL; explicit fields win", () => {
    expect(redisOptions({ url: "redis://alice:p%40ss@redis.example:6380/3" })).toEqual({
      host: "redis.example",
      port: 6380,
      db: 3,
      username: "alice",
      password: "p@ss",
    });
    expect(redisOptions({ url: "redis://alice:old@h", username: "bob", password: "new" })).toMatchObject({
      host: "h",
      port: 6379,
      username: "bob",
      password: "new",
    });
    expect(redisOptions({ url: "redis://[::1]:7000" })).toEqual({ host: "::1", port: 7000 });
  });

  it("turns TLS on exactly for rediss://, with the CA", () => {
    expect(redisOptions({ url: "rediss://h:6380", tls: { ca: "CA" } }).tls).toEqual({ ca: "CA" });
    expect(redisOptions({ url: "rediss://h:6380" }).tls).toEqual({});
    expect(redisOptions({ url: "redis://h:6380" }).tls).toBeUndefined();
  });

  it("refuses a path that is not a database number", () => {
    expect(() => redisOptions({ url: "redis://h:1/abc" })).toThrow(expect.objectContaining({ field: "REDIS_URL" }));
  });
});

describe("describeRedis", () => {
  it("names the server and the user, never the password", () => {
    expect(describeRedis({ url: "rediss://alice:s3cret@h:6380/1" })).toBe("rediss://alice@h:6380/1");
    expect(describeRedis({ url: "redis://:s3cret@h:6379", password: "x" })).toBe("redis://h:6379");
    // The old message kept what followed an unencoded "@" in the password (its regex stopped there).
    expect(describeRedis({ url: "redis://:p@ssw0rd-xyz@h:6379" })).toBe("redis://h:6379");
    expect(redisOptions({ url: "redis://:p@ssw0rd-xyz@h:6379" })).toMatchObject({
      host: "h",
      password: "p@ssw0rd-xyz",
    });
  });
});

describe("Redis errors", () => {
  const wrongPass = () =>
    Object.assign(new Error("WRONGPASS invalid username-password pair or user is disabled."), {
      name: "ReplyError",
      command: { name: "auth", args: ["alice", "hunter2-secret"] },
    });

  it("scrubRedisError removes an AUTH's arguments in place", () => {
    const e = scrubRedisError(wrongPass());
    expect(e.command.args).toEqual([REDACTED, REDACTED]);
    const other = scrubRedisError(Object.assign(new Error("x"), { command: { name: "get", args: ["key"] } }));
    expect(other.command.args).toEqual(["key"]);
  });

  it("redactError copies: the log line loses the password, the original keeps its shape", () => {
    const original = wrongPass();
    const copy = redactError(Object.assign(new Error("wrapped", { cause: original }), {})) as Error;
    expect(JSON.stringify({ ...(copy.cause as object), message: (copy.cause as Error).message })).not.toContain(
      "hunter2-secret",
    );
    expect(original.command.args).toContain("hunter2-secret");
  });

  it("redactUrls hides the credentials of URLs in text", () => {
    expect(redactUrls("cannot reach redis://alice:hunter2@h:6379/0 now")).toBe(
      `cannot reach redis://${REDACTED}@h:6379/0 now`,
    );
  });

  it("explainRedisError names what to check", () => {
    expect(explainRedisError(wrongPass())).toMatch(/refused the credentials.*REDIS_PASSWORD/);
    const tls = Object.assign(new Error("self-signed certificate in certificate chain"), {
      code: "SELF_SIGNED_CERT_IN_CHAIN",
    });
    expect(explainRedisError(tls)).toMatch(/TLS.*REDIS_TLS_CA_FILE/);
  });
});
