import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FleetClient } from "@virtfleet/fleet";
import { afterEach, describe, expect, inject, it } from "vitest";
import { LocalRedis } from "../fixtures/redis-server.js";
import {
  domainState,
  type FleetEnv,
  filesIn,
  forceClean,
  jobPhase,
  leftovers,
  startWorker,
  tinySpec,
  until,
  virsh,
  virtInstallRunning,
  vmName,
  type WorkerProcess,
} from "./harness.js";

const imageDir = inject("imageDir");
const testRoot = inject("testRoot");
const cleanups: (() => Promise<unknown>)[] = [];
const storageDirs: string[] = [];

function fleetEnv(redisUrl = inject("redisUrl")): FleetEnv {
  return { redisUrl, prefix: `test-${randomUUID()}`, imageDir, testRoot };
}

async function worker(f: FleetEnv, options: Parameters<typeof startWorker>[1] = {}): Promise<WorkerProcess> {
  const w = await startWorker(f, options);
  storageDirs.push(w.storageDir);
  cleanups.push(() => w.stop("SIGKILL"));
  return w;
}

function client(f: FleetEnv): FleetClient {
  const c = new FleetClient({ redisUrl: f.redisUrl, prefix: f.prefix });
  cleanups.push(() => c.close());
  return c;
}

async function faultDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vft-faults-"));
  return dir;
}

// Every test must leave no domain, pool or file behind; a leak fails the test (then is cleaned).
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  const left = await leftovers();
  const files = (await Promise.all(storageDirs.map(filesIn))).flat();
  await forceClean(storageDirs.splice(0));
  expect({ ...left, files }).toEqual({ domains: [], pools: [], files: [] });
});

async function destroyAll(c: FleetClient, names: string[]): Promise<void> {
  const ends = await Promise.all(names.map(async (n) => (await c.destroyVm(n)).wait({ timeoutMs: 60_000 })));
  expect(ends.map((e) => e.phase)).toEqual(names.map(() => "done"));
}

describe("crash safety", () => {
  it("a waiting job is cancelled out of its queue and never runs", async () => {
    const f = fleetEnv();
    const c = client(f);
    const w = await worker(f);
    await w.stop("SIGTERM"); // the host is known but nobody takes its jobs
    const host = await c.hosts.get(w.hostId);
    assert(host !== undefined);
    await c.hosts.heartbeat({ ...host.status, draining: false }, 10_000);
    const name = vmName("cw");
    const job = await c.createVm(tinySpec(name));
    expect(await c.cancelJob(job.id)).toBe("cancelled");
    expect((await job.wait({ timeoutMs: 5000 })).phase).toBe("cancelled");
    expect(await c.vms.get(name)).toBeUndefined();
    // Cancelling again, or a job that ended, changes nothing.
    expect(await c.cancelJob(job.id)).toBe("cancelled");
    await expect(c.cancelJob("no-such-job")).rejects.toMatchObject({ code: "JOB_NOT_FOUND" });
  });

  it("a running job is aborted on its worker: virt-install killed, work rolled back, job cancelled", async () => {
    const f = fleetEnv();
    const faults = await faultDir();
    const c = client(f);
    await worker(f, { faultDir: faults });
    const name = vmName("cr");
    await writeFile(path.join(faults, `slow-${name}`), "30");
    const job = await c.createVm(tinySpec(name));
    await until("virt-install to start", async () =>
      (await jobPhase(c, job.id)) === "domain.defining" ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(await c.cancelJob(job.id)).toBe("cancelling");
    const end = await job.wait({ timeoutMs: 20_000 });
    expect(end.phase).toBe("cancelled");
    expect(end.error?.code).toBe("CANCELLED");
    expect(await domainState(name)).toBeUndefined();
    expect(await c.vms.get(name)).toBeUndefined();
  });

  it("transient failures are retried with backoff; permanent ones fail at once", async () => {
    const f = fleetEnv();
    const faults = await faultDir();
    const c = client(f);
    await worker(f, { faultDir: faults });
    const flaky = vmName("fl");
    const broken = vmName("br");
    await writeFile(path.join(faults, `flaky-${flaky}`), "");
    await writeFile(path.join(faults, `fail-${broken}`), "injected permanent failure");
    const [a, b] = await Promise.all([c.createVm(tinySpec(flaky)), c.createVm(tinySpec(broken))]);
    const phasesA: string[] = [];
    const endA = await a.wait({ timeoutMs: 60_000, onEvent: (e) => phasesA.push(e.phase) });
    expect(endA.phase).toBe("done");
    expect(phasesA.filter((p) => p === "domain.defining")).toHaveLength(2);
    const phasesB: string[] = [];
    const endB = await b.wait({ timeoutMs: 60_000, onEvent: (e) => phasesB.push(e.phase) });
    expect(endB.phase).toBe("failed");
    expect(endB.error).toMatchObject({ code: "COMMAND_FAILED", stderr: expect.stringContaining("injected") });
    expect(endB.error?.command?.[0]).toBe("virt-install");
    expect(phasesB.filter((p) => p === "domain.defining")).toHaveLength(1);
    expect(await domainState(broken)).toBeUndefined();
    await destroyAll(c, [flaky]);
  });

  it("a worker SIGKILLed while virt-install runs: the job is picked up again and converges to one running VM", async () => {
    const f = fleetEnv();
    const faults = await faultDir();
    const c = client(f);
    const w1 = await worker(f, { faultDir: faults, hostId: "crashy" });
    const name = vmName("kill");
    await writeFile(path.join(faults, `slow-${name}`), "1");
    const job = await c.createVm(tinySpec(name), { guestReady: true });
    await until("virt-install to run", async () => ((await virtInstallRunning(name)) ? true : undefined), 30_000);
    w1.child.kill("SIGKILL");
    await w1.exited;
    await worker(f, { faultDir: faults, hostId: "crashy" });
    const end = await job.wait({ timeoutMs: 90_000 });
    expect(end.phase).toBe("done");
    expect(await domainState(name)).toBe("running");
    const domains = (await virsh(["list", "--all", "--name"])).stdout.split("\n").filter((d) => d.trim() === name);
    expect(domains).toHaveLength(1);
    await destroyAll(c, [name]);
  });

  it("on start a worker removes nothing the fleet merely does not know: a forgotten VM and a stray folder are reported orphans", async () => {
    const f = fleetEnv();
    const c = client(f);
    const w1 = await worker(f, { hostId: "recon" });
    const kept = vmName("keep");
    const orphan = vmName("orph");
    for (const n of [kept, orphan]) expect((await (await c.createVm(tinySpec(n))).wait()).phase).toBe("done");
    await w1.stop("SIGTERM");
    // The fleet forgets one VM (as if its record were lost), and a stray folder appears.
    await c.vms.remove(orphan);
    const stray = path.join(w1.storageDir, vmName("stray"));
    await mkdir(stray, { mode: 0o755 });
    await writeFile(path.join(stray, "disk0.qcow2"), "junk");
    const w2 = await worker(f, { hostId: "recon" });
    await until("reconciliation", async () => (w2.logs().includes("reconciled host") ? true : undefined), 20_000);
    // Its job ended `done`: nothing proves the VM dead, so it is left running, and reported.
    expect(await domainState(orphan)).toBe("running");
    expect(await domainState(kept)).toBe("running");
    expect((await readdir(w1.storageDir)).sort()).toEqual([kept, orphan, path.basename(stray)].sort());
    expect((await c.hosts.get("recon"))?.status.orphans.map((o) => o.vm).sort()).toEqual(
      [orphan, path.basename(stray)].sort(),
    );
    await destroyAll(c, [kept]);
    expect((await (await c.destroyVm(orphan, { host: "recon" })).wait({ timeoutMs: 60_000 })).phase).toBe("done");
    await rm(stray, { recursive: true });
  });

  it("SIGTERM lets a running job finish; past the deadline the job is handed back and another worker ends it", async () => {
    const f = fleetEnv();
    const faults = await faultDir();
    const c = client(f);
    const w1 = await worker(f, { faultDir: faults, hostId: "term" });
    const finish = vmName("fin");
    await writeFile(path.join(faults, `slow-${finish}`), "2");
    const job1 = await c.createVm(tinySpec(finish));
    await until("virt-install", async () => ((await jobPhase(c, job1.id)) === "domain.defining" ? true : undefined));
    expect(await w1.stop("SIGTERM")).not.toBe(1);
    expect(await jobPhase(c, job1.id)).toBe("done");

    const w2 = await worker(f, { faultDir: faults, hostId: "term", env: { VIRTFLEET_SHUTDOWN_TIMEOUT_MS: "1000" } });
    const handed = vmName("hand");
    await writeFile(path.join(faults, `slow-${handed}`), "20");
    const job2 = await c.createVm(tinySpec(handed));
    await until("virt-install", async () => ((await jobPhase(c, job2.id)) === "domain.defining" ? true : undefined));
    await w2.stop("SIGTERM");
    expect(w2.logs()).toContain("handing running jobs back");
    const events = await c.log.read(job2.id);
    expect(events.at(-1)?.message).toMatch(/handed back/);
    expect(await domainState(handed)).toBeUndefined();
    await writeFile(path.join(faults, `slow-${handed}`), "0");
    await worker(f, { faultDir: faults, hostId: "term" });
    expect((await job2.wait({ timeoutMs: 60_000 })).phase).toBe("done");
    await destroyAll(c, [finish, handed]);
  });

  it("a Redis restart (AOF) in the middle of a batch loses no accepted job; worker and client reconnect", async () => {
    const redis = await LocalRedis.start({ appendonly: true });
    cleanups.push(() => redis.stop());
    const f = fleetEnv(redis.url);
    const c = client(f);
    await worker(f, { env: { VIRTFLEET_CONCURRENCY: "2" } });
    const names = Array.from({ length: 4 }, (_, i) => vmName(`rr${i}`));
    const jobs: Awaited<ReturnType<FleetClient["createVm"]>>[] = [];
    for (const n of names) jobs.push(await c.createVm(tinySpec(n)));
    const [first] = jobs;
    assert(first !== undefined);
    await until("the first VM to run", async () => ((await jobPhase(c, first.id)) === "done" ? true : undefined));
    await redis.kill();
    await new Promise((r) => setTimeout(r, 1000));
    await redis.resume();
    const ends = await Promise.all(jobs.map((j) => j.wait({ timeoutMs: 90_000 })));
    expect(ends.map((e) => e.phase)).toEqual(names.map(() => "done"));
    for (const n of names) expect(await domainState(n)).toBe("running");
    await destroyAll(c, names);
  });
});
