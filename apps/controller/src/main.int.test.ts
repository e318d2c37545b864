import { spawn } from "node:child_process";
import path from "node:path";
import { LabKeys, LeaseEvents, LeaseStore } from "@virtfleet/labs";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

const MAIN = path.resolve(import.meta.dirname, "../dist/main.js");

async function until(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("virtfleet-controller", () => {
  test("is elected, reaps expired leases, and on SIGTERM gives its lock up and exits", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const keys = new LabKeys(prefix);
    const leases = new LeaseStore(redis, keys);
    const lease = await leases.create(
      { kind: "claim", target: "rp-ctl-1", ttlMs: 1, maxLifetimeMs: 60_000 },
      Date.now() - 5000,
    );
    const child = spawn(process.execPath, [MAIN], {
      env: {
        ...process.env,
        REDIS_URL: redisUrl,
        VIRTFLEET_PREFIX: prefix,
        VIRTFLEET_REAPER_INTERVAL_MS: "100",
        LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let logs = "";
    child.stdout.on("data", (d) => {
      logs += d;
    });
    child.stderr.on("data", (d) => {
      logs += d;
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    try {
      await until("the lock taken", async () => (await redis.get(keys.controllerLock())) !== null);
      // The expiry is recorded once, and the pools' claim handler ends the lease (its VM is in no pool).
      const events = new LeaseEvents(redis, keys, pino({ level: "silent" }));
      await until("the expiry recorded", async () => (await events.list()).some((e) => e.leaseId === lease.id));
      await until("the lease ended", async () => (await redis.exists(keys.lease(lease.id))) === 0);
      expect(await redis.zscore(keys.leasesReaping(), lease.id)).toBeNull();
      expect(await redis.zscore(keys.leases(), lease.id)).toBeNull();
      expect(await events.expiries()).toEqual({ claim: 1 });
      expect(logs).toMatch(/"audit":true.*"action":"lease.expired"/);
      child.kill("SIGTERM");
      const end = await exited;
      expect(end.signal ?? end.code, logs).toBe("SIGTERM");
      expect(await redis.get(keys.controllerLock())).toBeNull();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });

  test("a bad variable is refused, naming it", async () => {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, VIRTFLEET_REAPER_INTERVAL_MS: "often" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    expect(code).toBe(2);
    expect(stderr).toMatch(/VIRTFLEET_REAPER_INTERVAL_MS/);
  });
});
