import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { redisConfigFromEnv, redisOptions } from "@virtfleet/fleet";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../fixtures/redis-server.js";
import { repo } from "./harness.js";

/**
 * `deploy/host-setup.sh --with-redis` (quickstart's Redis), on a port and folders of the test's own:
 * Redis runs as user redis with a generated password, and an earlier set-up's root-run Redis without
 * a password is restarted that way, its data kept.
 */
const run = promisify(execFile);
const root = path.join(inject("testRoot"), `rd-hs-${randomUUID().slice(0, 8)}`);
const stateDir = path.join(root, "state");
const confDir = path.join(root, "etc");
const redisDir = path.join(stateDir, "redis");
const passwordFile = path.join(confDir, "redis.password");
let port = 0;

function hostSetup(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [path.join(repo, "deploy/host-setup.sh"), "--with-redis"], {
      env: {
        ...process.env,
        VIRTFLEET_REDIS_PORT: String(port),
        VIRTFLEET_STATE_DIR: stateDir,
        VIRTFLEET_CONF_DIR: confDir,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function connect(withPassword: boolean): Promise<Redis> {
  const config = redisConfigFromEnv({
    REDIS_URL: `redis://127.0.0.1:${port}`,
    ...(withPassword ? { REDIS_PASSWORD_FILE: passwordFile } : {}),
  });
  const redis = new Redis({
    ...redisOptions(config),
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on("error", () => undefined);
  await redis.connect().catch(() => undefined);
  return redis;
}

async function serverPid(): Promise<number> {
  return Number((await readFile(path.join(redisDir, "redis.pid"), "utf8")).trim());
}

afterAll(async () => {
  const redis = await connect(true).catch(() => undefined);
  await redis?.call("SHUTDOWN", "NOSAVE").catch(() => undefined);
  redis?.disconnect();
  const pid = await serverPid().catch(() => 0);
  if (pid > 0) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  await rm(root, { recursive: true, force: true });
});

describe("host-setup.sh --with-redis", () => {
  it("restarts an earlier set-up's root-run Redis without a password as user redis with a generated password, keeping its data; a second run changes nothing", async () => {
    port = await freePort();
    // What the earlier host-setup left: redis-server as root, no password, data in the state dir.
    await mkdir(stateDir, { recursive: true, mode: 0o755 });
    await mkdir(redisDir, { mode: 0o750 });
    await run("redis-server", [
      path.join(repo, "deploy/redis/virtfleet.conf"),
      "--port",
      String(port),
      "--daemonize",
      "yes",
      "--dir",
      redisDir,
      "--pidfile",
      path.join(redisDir, "redis.pid"),
      "--logfile",
      path.join(redisDir, "redis.log"),
    ]);
    const old = await connect(false);
    for (let i = 0; i < 100 && old.status !== "ready"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      await old.connect().catch(() => undefined);
    }
    await old.set("rd-kept", "yes");
    old.disconnect();

    const first = await hostSetup();
    expect(first).toEqual({ code: 0, stdout: expect.any(String), stderr: expect.any(String) });
    expect(first.stderr).toMatch(/has no password: restarting it as user redis/);

    // No password: refused.
    const anonymous = await connect(false);
    await expect(anonymous.ping()).rejects.toThrow(/NOAUTH/);
    anonymous.disconnect();
    // The generated password (root only) lets clients in; the data survived.
    const password = (await readFile(passwordFile, "utf8")).trim();
    expect(password.length).toBeGreaterThanOrEqual(32);
    expect(((await stat(passwordFile)).mode & 0o777).toString(8)).toBe("600");
    const redis = await connect(true);
    expect(await redis.get("rd-kept")).toBe("yes");
    expect(await redis.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
    expect(await redis.config("GET", "maxmemory-policy")).toEqual(["maxmemory-policy", "noeviction"]);
    redis.disconnect();

    // The server runs as redis; its data is redis's, 0750; its command line holds no password.
    const pid = await serverPid();
    const { stdout: user } = await run("ps", ["-o", "user=", "-p", String(pid)]);
    expect(user.trim()).toBe("redis");
    const { stdout: redisUid } = await run("id", ["-u", "redis"]);
    const dir = await stat(redisDir);
    expect({ uid: dir.uid, mode: (dir.mode & 0o777).toString(8) }).toEqual({ uid: Number(redisUid), mode: "750" });
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    expect(cmdline).not.toContain(password);
    expect(`${first.stdout}${first.stderr}`).not.toContain(password);

    const second = await hostSetup();
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/redis: already answering/);
    expect(await serverPid()).toBe(pid);
  });
});
