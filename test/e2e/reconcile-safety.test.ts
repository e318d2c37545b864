import { randomUUID } from "node:crypto";
import { mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { HostMonitor } from "@virtfleet/agent";
import { FleetClient } from "@virtfleet/fleet";
import { Redis } from "ioredis";
import { afterEach, describe, expect, inject, it } from "vitest";
import { LocalRedis } from "../fixtures/redis-server.js";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  jobPhase,
  runCli,
  type StartWorkerOptions,
  startWorker,
  tinySpec,
  until,
  virsh,
  type WorkerProcess,
} from "./harness.js";

const cleanups: (() => Promise<unknown>)[] = [];
/** Every VM name a test made: checked (and force-removed) after each test. */
const made: string[] = [];
const dirs: string[] = [];

/** A VM name of this suite (`hs-`: host-safety's). */
function hsName(tag: string): string {
  const name = `hs-${tag}-${randomUUID().slice(0, 8)}`;
  made.push(name);
  return name;
}

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  const left: string[] = [];
  for (const name of made.splice(0)) {
    if ((await domainState(name)) !== undefined) {
      left.push(name);
      await virsh(["destroy", name]);
      await virsh(["undefine", name, "--nvram"]);
    }
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  expect(left).toEqual([]);
});

async function redis(): Promise<LocalRedis> {
  const r = await LocalRedis.start({ appendonly: false });
  cleanups.push(() => r.stop());
  return r;
}

function fleetEnv(redisUrl: string, prefix = `hs-${randomUUID().slice(0, 8)}`): FleetEnv {
  return { redisUrl, prefix, imageDir: inject("imageDir"), testRoot: inject("testRoot") };
}

async function worker(f: FleetEnv, options: StartWorkerOptions): Promise<WorkerProcess> {
  const w = await startWorker(f, options);
  dirs.push(w.storageDir);
  cleanups.push(() => w.stop("SIGKILL"));
  return w;
}

function client(f: FleetEnv): FleetClient {
  const c = new FleetClient({ redisUrl: f.redisUrl, prefix: f.prefix });
  cleanups.push(() => c.close());
  return c;
}

async function reconciled(w: WorkerProcess, times = 1): Promise<void> {
  await until(
    "reconciliation",
    async () => (w.logs().split("reconciled host").length > times ? true : undefined),
    30_000,
  );
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

interface OrphanRow {
  host: string;
  vm: string;
  kind: string;
  reason: string;
}

describe("reconciliation never destroys what it cannot prove is virtfleet's and dead", () => {
  it("a worker started against an emptied Redis leaves every VM running and reports them; --delete-orphans removes them, never an unmarked folder", async () => {
    const r = await redis();
    const f = fleetEnv(r.url);
    const c = client(f);
    const hostId = `hs-${randomUUID().slice(0, 6)}`;
    const w1 = await worker(f, { hostId });
    const names = [hsName("empty"), hsName("empty")];
    const ends = await Promise.all(names.map(async (n) => (await c.createVm(tinySpec(n))).wait({ timeoutMs: 90_000 })));
    expect(ends.map((e) => e.phase)).toEqual(["done", "done"]);
    for (const n of names) expect(await readdir(path.join(w1.storageDir, n))).toContain(".virtfleet.json");
    // A folder that looks like a VM's but that virtfleet did not make.
    const stray = path.join(w1.storageDir, hsName("stray"));
    await mkdir(stray, { mode: 0o755 });
    await writeFile(path.join(stray, "disk0.qcow2"), "someone's data");
    await w1.stop("SIGTERM");

    const raw = new Redis(r.url);
    await raw.flushall();
    raw.disconnect();

    const w2 = await worker(f, { hostId });
    await reconciled(w2);
    for (const n of names) {
      expect(await domainState(n)).toBe("running");
      expect(await exists(path.join(w2.storageDir, n, "disk0.qcow2"))).toBe(true);
    }
    expect(await exists(path.join(stray, "disk0.qcow2"))).toBe(true);
    expect(w2.logs()).toMatch(/"level":40.*"vm":"hs-empty-[^"]+".*orphan domain/);

    // Reported: in the host's status and by `virtfleet ls --orphans`.
    const status = (await c.hosts.get(hostId))?.status;
    expect(status?.orphans.map((o) => `${o.kind}:${o.vm}`).sort()).toEqual(
      [...names.map((n) => `domain:${n}`), `folder:${path.basename(stray)}`].sort(),
    );
    const ls = await runCli(["ls", "--orphans", "--json"], cliEnv(f));
    expect(ls.code).toBe(0);
    const rows = JSON.parse(ls.stdout) as OrphanRow[];
    expect(rows.map((o) => `${o.host}:${o.kind}:${o.vm}`).sort()).toEqual(
      [...names.map((n) => `${hostId}:domain:${n}`), `${hostId}:folder:${path.basename(stray)}`].sort(),
    );
    expect(rows.find((o) => o.vm === names[0])?.reason).toMatch(/another fleet/);
    const table = await runCli(["ls", "--orphans"], cliEnv(f));
    expect(table.stdout.split("\n")[0]).toMatch(/^HOST\s+VM\s+KIND\s+REASON$/);
    expect(table.stdout).toContain(names[0]);

    // Without the flag, a reconcile request only reports.
    const report = await runCli(["hosts", "reconcile", hostId, "--json"], cliEnv(f));
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout)).toMatchObject({ hostId, removed: [] });
    for (const n of names) expect(await domainState(n)).toBe("running");

    // The operator's word removes them; the unmarked folder stays.
    const del = await runCli(["hosts", "reconcile", hostId, "--delete-orphans", "--json"], cliEnv(f));
    expect(del.code, del.stderr).toBe(0);
    const result = JSON.parse(del.stdout) as { removed: OrphanRow[]; orphans: OrphanRow[] };
    expect(result.removed.map((o) => `${o.kind}:${o.vm}`).sort()).toEqual(
      names.flatMap((n) => [`domain:${n}`, `folder:${n}`]).sort(),
    );
    expect(result.orphans.map((o) => `${o.kind}:${o.vm}`)).toEqual([`folder:${path.basename(stray)}`]);
    for (const n of names) {
      expect(await domainState(n)).toBeUndefined();
      expect(await exists(path.join(w2.storageDir, n))).toBe(false);
    }
    expect(await exists(path.join(stray, "disk0.qcow2"))).toBe(true);
    await until("the host's status to follow", async () => {
      const orphans = (await c.hosts.get(hostId))?.status.orphans ?? [];
      return orphans.length === 1 ? true : undefined;
    });
  });

  it("a worker started with another VIRTFLEET_PREFIX leaves the VMs running; the host's reconcile asks; a down host is a clear error", async () => {
    const r = await redis();
    const a = fleetEnv(r.url);
    const b = fleetEnv(r.url);
    const hostId = `hs-${randomUUID().slice(0, 6)}`;
    const w1 = await worker(a, { hostId });
    const name = hsName("prefix");
    expect((await (await client(a).createVm(tinySpec(name))).wait({ timeoutMs: 90_000 })).phase).toBe("done");
    await w1.stop("SIGTERM");

    const w2 = await worker(b, { hostId, env: { VIRTFLEET_STORAGE_DIR: w1.storageDir } });
    await reconciled(w2);
    expect(await domainState(name)).toBe("running");
    expect(await exists(path.join(w1.storageDir, name, "disk0.qcow2"))).toBe(true);
    const ls = await runCli(["ls", "--orphans", "--json"], cliEnv(b));
    expect(JSON.parse(ls.stdout)).toEqual([
      { host: hostId, vm: name, kind: "domain", reason: expect.stringMatching(/another fleet/) },
    ]);

    const del = await runCli(["hosts", "reconcile", hostId, "--delete-orphans"], cliEnv(b));
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout).toMatch(new RegExp(`${name}\\s+domain\\s+removed`));
    expect(await domainState(name)).toBeUndefined();
    expect(await exists(path.join(w1.storageDir, name))).toBe(false);

    await w2.stop("SIGTERM");
    const down = await runCli(["hosts", "reconcile", hostId, "--json"], cliEnv(b));
    expect(down.code).toBe(1);
    expect(JSON.parse(down.stdout)).toMatchObject({ error: { code: "HOST_NOT_FOUND", field: "host" } });
    expect(down.stderr).toMatch(/down/);
  });

  it("a failed job's leftover domain is still removed automatically on start", async () => {
    const r = await redis();
    const f = fleetEnv(r.url);
    const c = client(f);
    const hostId = `hs-${randomUUID().slice(0, 6)}`;
    const w1 = await worker(f, { hostId });
    const name = hsName("lost");
    // The job waits for a line its guest never prints: its domain runs while the job is still live.
    const job = await c.createVm(tinySpec(name), { guestReady: { pattern: "NEVER-PRINTED", timeoutSec: 600 } });
    await until(
      "the domain to run",
      async () => ((await jobPhase(c, job.id)) === "domain.running" ? true : undefined),
      90_000,
    );
    // The worker dies; the fleet fails the job HOST_LOST; its domain is left behind.
    w1.child.kill("SIGKILL");
    await w1.exited;
    expect(await domainState(name)).toBe("running");
    await until("the host to be down", async () => ((await c.hosts.get(hostId))?.up === false ? true : undefined));
    const monitorRedis = c.connect();
    try {
      expect(await new HostMonitor({ fleet: c, redis: monitorRedis }).checkHosts()).toEqual([hostId]);
    } finally {
      monitorRedis.disconnect();
    }
    expect((await job.wait({ timeoutMs: 10_000 })).phase).toBe("failed");

    const w2 = await worker(f, { hostId });
    await reconciled(w2);
    expect(await domainState(name)).toBeUndefined();
    expect(await exists(path.join(w2.storageDir, name))).toBe(false);
    expect((await c.hosts.get(hostId))?.status.orphans).toEqual([]);
  });

  it("a create never removes a folder of its VM's name that virtfleet did not make: NAME_CLASH", async () => {
    const r = await redis();
    const f = fleetEnv(r.url);
    const c = client(f);
    const w = await worker(f, { hostId: `hs-${randomUUID().slice(0, 6)}` });
    const name = hsName("clash");
    const dir = path.join(w.storageDir, name);
    await mkdir(dir, { mode: 0o755 });
    await writeFile(path.join(dir, "disk0.qcow2"), "someone's data");
    const end = await (await c.createVm(tinySpec(name))).wait({ timeoutMs: 60_000 });
    expect(end).toMatchObject({ phase: "failed", error: { code: "NAME_CLASH", field: "spec.name" } });
    expect(await readdir(dir)).toEqual(["disk0.qcow2"]);
    expect(await domainState(name)).toBeUndefined();
  });
});
