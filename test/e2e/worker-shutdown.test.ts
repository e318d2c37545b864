import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { promisify } from "node:util";
import { afterEach, describe, expect, inject, it } from "vitest";
import { LocalRedis } from "../fixtures/redis-server.js";
import { type FleetEnv, startWorker, type WorkerProcess } from "./harness.js";

const run = promisify(execFile);
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** The pid of the test's own redis-server (its process title names its port). */
async function redisPid(port: number): Promise<number> {
  const { stdout } = await run("pgrep", ["-f", `^redis-server .*:${port}$`]);
  const pid = Number(stdout.trim().split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no redis-server on port ${port}`);
  return pid;
}

async function setup(env: Record<string, string>): Promise<{ redis: LocalRedis; worker: WorkerProcess }> {
  const redis = await LocalRedis.start({ appendonly: false });
  cleanups.push(() => redis.stop());
  const f: FleetEnv = {
    redisUrl: redis.url,
    prefix: `hs-${randomUUID()}`,
    imageDir: inject("imageDir"),
    testRoot: inject("testRoot"),
  };
  const worker = await startWorker(f, { hostId: `hs-${randomUUID().slice(0, 6)}`, env });
  cleanups.push(() => rm(worker.storageDir, { recursive: true, force: true }));
  cleanups.push(() => worker.stop("SIGKILL"));
  return { redis, worker };
}

/** Milliseconds until the process exits, or undefined when it is still running after `withinMs`. */
async function exitsWithin(w: WorkerProcess, withinMs: number): Promise<number | undefined> {
  const t0 = Date.now();
  const timer = new Promise<undefined>((r) => setTimeout(() => r(undefined), withinMs));
  const ended = await Promise.race([w.exited.then(() => Date.now() - t0), timer]);
  return ended;
}

describe("a worker asked to stop while Redis is down", () => {
  it("SIGTERM with Redis killed: the worker exits within its shutdown deadline", async () => {
    const deadlineMs = 3000;
    const { redis, worker } = await setup({ VIRTFLEET_SHUTDOWN_TIMEOUT_MS: String(deadlineMs) });
    await redis.kill();
    await new Promise((r) => setTimeout(r, 500));
    worker.child.kill("SIGTERM");
    // The deadline, plus a margin for the last steps and the log flush.
    const took = await exitsWithin(worker, deadlineMs + 5000);
    expect(took, `still running:\n${worker.logs()}`).toBeDefined();
    expect(worker.logs()).toContain("worker stopped");
  });

  it("SIGTERM with Redis frozen (SIGSTOP): the worker exits within its deadline; nothing waits for Redis", async () => {
    const deadlineMs = 3000;
    const { redis, worker } = await setup({ VIRTFLEET_SHUTDOWN_TIMEOUT_MS: String(deadlineMs) });
    const pid = await redisPid(redis.port);
    process.kill(pid, "SIGSTOP");
    cleanups.push(async () => process.kill(pid, "SIGCONT"));
    await new Promise((r) => setTimeout(r, 500));
    worker.child.kill("SIGTERM");
    const took = await exitsWithin(worker, deadlineMs + 5000);
    expect(took, `still running:\n${worker.logs()}`).toBeDefined();
  });

  it("a second SIGTERM ends the worker at once, even with Redis frozen and a long deadline", async () => {
    const { redis, worker } = await setup({ VIRTFLEET_SHUTDOWN_TIMEOUT_MS: "120000" });
    const pid = await redisPid(redis.port);
    process.kill(pid, "SIGSTOP");
    cleanups.push(async () => process.kill(pid, "SIGCONT"));
    worker.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    expect(worker.child.exitCode).toBeNull();
    worker.child.kill("SIGTERM");
    const took = await exitsWithin(worker, 5000);
    expect(took, `still running:\n${worker.logs()}`).toBeDefined();
    expect(worker.logs()).toContain("second signal");
    expect((await worker.exited).code).toBe(130);
  });
});
