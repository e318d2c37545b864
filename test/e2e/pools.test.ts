import { randomUUID } from "node:crypto";
import { POOL_LABEL, type PoolDetail, type PoolView } from "@virtfleet/core";
import { createRedis, FleetClient } from "@virtfleet/fleet";
import { LabKeys, LeaseStore, TemplateStore } from "@virtfleet/labs";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  runCli,
  startWorker,
  tinySpec,
  until,
  type WorkerProcess,
} from "./harness.js";
import { domainsNamed, forceCleanNamed } from "./prefixed-cleanup.js";

// Warm pools with a real worker and real (tiny, TCG) VMs, driven through the CLI; the worker runs
// the elected controller, hence the pool manager.
const PREFIX = "po-";
const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
const env = cliEnv(fleet);
let worker: WorkerProcess;
let client: FleetClient;
let redis: Redis;
let templates: TemplateStore;

/** The template's spec: the tiny guest, ready when its console says so. */
function templateSpec(memoryMiB = 192) {
  const { name: _name, ...spec } = tinySpec("unused", { memoryMiB });
  return { ...spec, guestReady: { strategy: "console" } };
}

beforeAll(async () => {
  worker = await startWorker(fleet);
  client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
  redis = createRedis({ url: fleet.redisUrl });
  templates = new TemplateStore(redis, new LabKeys(fleet.prefix));
});

afterAll(async () => {
  redis?.disconnect();
  await client?.close();
  await worker?.stop();
  await forceCleanNamed(PREFIX, [worker.storageDir]);
});

const t0 = Date.now();
function step(what: string): void {
  console.log(`[pools e2e +${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
}

async function cli(args: string[]) {
  const r = await runCli(args, env);
  return r;
}

async function poolLs(): Promise<PoolView[]> {
  const r = await cli(["pool", "ls", "--json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as PoolView[];
}

async function show(name: string): Promise<PoolDetail> {
  const r = await cli(["pool", "show", name, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as PoolDetail;
}

describe("warm pools with real VMs", () => {
  it("a paused pool of min-ready 3: 6 parallel claims give 6 different VMs; a template change replaces only unclaimed ones; rm leaves nothing", async () => {
    const template = `po-tiny-${randomUUID().slice(0, 6)}`;
    const pool = `po-e2e-${randomUUID().slice(0, 4)}`;
    onTestFailed(async () => {
      console.log(JSON.stringify(await show(pool).catch((e: unknown) => String(e)), null, 1));
      const left = await domainsNamed(`${pool}-`).catch(() => [] as string[]);
      for (const d of left) console.log(`left: ${d} ${String(await domainState(d))}`);
      const lines = worker.logs().split("\n");
      console.log(
        lines
          .filter((l) => /pool|controller|power/i.test(l))
          .slice(-80)
          .join("\n"),
      );
      for (const d of left) console.log(lines.filter((l) => l.includes(d)).join("\n"));
    });
    await templates.put(template, templateSpec());
    const created = await cli([
      "pool",
      "create",
      pool,
      "--template",
      template,
      "--min-ready",
      "3",
      "--max",
      "6",
      "--refill-concurrency",
      "3",
      "--json",
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: pool, minReady: 3, max: 6, idle: "pause" });

    step("created");
    // min-ready 3 reaches 3 ready.
    await until(
      "3 ready VMs",
      async () => ((await poolLs()).find((p) => p.name === pool)?.ready === 3 ? true : undefined),
      300_000,
    );
    const ls = (await poolLs()).find((p) => p.name === pool);
    expect(ls).toMatchObject({ ready: 3, starting: 0, claimed: 0, stale: 0 });
    expect(ls?.below).toBeUndefined();
    const text = await cli(["pool", "ls"]);
    expect(text.stdout).toMatch(new RegExp(`${pool}\\s+${template}@1\\s+3/3\\s+0\\s+0\\s+0\\s+6`));
    // Ready VMs wait paused (libvirt says so).
    const ready = (await show(pool)).vms.filter((v) => v.state === "ready");
    expect(ready).toHaveLength(3);
    for (const v of ready) {
      expect(v.name).toMatch(new RegExp(`^${pool}-[a-z0-9]{8}$`));
      expect(await domainState(v.name)).toBe("paused");
    }

    step("3 ready");
    // 6 parallel claims: 3 at once, 3 after refills; never one VM twice.
    const claims = await Promise.all(
      Array.from({ length: 6 }, () => cli(["pool", "claim", pool, "--ttl", "30m", "--wait", "300s", "--json"])),
    );
    for (const c of claims) expect(c.code, c.stderr).toBe(0);
    const results = claims.map((c) => JSON.parse(c.stdout) as Record<string, unknown>);
    for (const r of results) {
      expect(Object.keys(r).sort()).toEqual(["addresses", "expiresAt", "host", "leaseId", "vm"]);
      expect(r.host).toBe(worker.hostId);
    }
    const vms = results.map((r) => r.vm as string);
    expect(new Set(vms).size).toBe(6);
    for (const v of ready) expect(vms).toContain(v.name);
    // A claimed VM runs.
    for (const vm of vms) expect(await domainState(vm)).toBe("running");
    const full = await show(pool);
    expect(
      full.vms
        .filter((v) => v.state === "claimed")
        .map((v) => v.name)
        .sort(),
    ).toEqual([...vms].sort());
    expect(full.below).toContain("at max (6 VMs)");

    step("6 claimed");
    // Release 3: they are destroyed (not reused) and the pool refills to 3 ready.
    const released = vms.slice(0, 3);
    const kept = vms.slice(3);
    for (const vm of released) {
      const r = await cli(["pool", "release", vm]);
      expect(r.code, r.stderr).toBe(0);
    }
    await until(
      "3 ready again",
      async () => {
        const d = await show(pool);
        return d.ready === 3 && d.claimed === 3 ? d : undefined;
      },
      300_000,
    );
    for (const vm of released)
      await until("released VM gone", async () => ((await domainState(vm)) === undefined ? true : undefined), 60_000);
    const before = (await show(pool)).vms.filter((v) => v.state === "ready").map((v) => v.name);
    for (const vm of before) expect(released).not.toContain(vm);

    step("refilled after release");
    // A template change replaces the unclaimed VMs only.
    await templates.put(template, templateSpec(200));
    const after = await until(
      "3 ready of version 2",
      async () => {
        const d = await show(pool);
        const r = d.vms.filter((v) => v.state === "ready");
        return r.length === 3 && r.every((v) => v.templateVersion === 2 && v.stale === false) ? d : undefined;
      },
      300_000,
    );
    for (const v of after.vms.filter((x) => x.state === "ready")) expect(before).not.toContain(v.name);
    expect(
      after.vms
        .filter((v) => v.state === "claimed")
        .map((v) => v.name)
        .sort(),
    ).toEqual([...kept].sort());
    for (const vm of kept) expect(await domainState(vm)).toBe("running");
    for (const vm of before)
      await until("stale VM gone", async () => ((await domainState(vm)) === undefined ? true : undefined), 60_000);

    step("replaced after the template change");
    // pool rm --wait: every VM (ready and claimed) destroyed, leases ended, nothing left.
    const rm = await cli(["pool", "rm", pool, "--wait"]);
    expect(rm.code, rm.stderr).toBe(0);
    await until(
      "no domain left",
      async () => ((await domainsNamed(`${pool}-`)).length === 0 ? true : undefined),
      60_000,
    );
    const records = (await client.vms.list()).filter((r) => r.labels[POOL_LABEL] === pool);
    expect(records).toEqual([]);
    expect(await new LeaseStore(redis, new LabKeys(fleet.prefix)).list()).toEqual([]);
    expect(await redis.keys(`${fleet.prefix}:pool:${pool}*`)).toEqual([]);
    expect(await filesIn(worker.storageDir)).toEqual([]);
  }, 600_000);

  it("a claim with none ready says POOL_EMPTY (exit 1) and why", async () => {
    const template = `po-tiny-${randomUUID().slice(0, 6)}`;
    const pool = `po-empty-${randomUUID().slice(0, 4)}`;
    await templates.put(template, templateSpec());
    expect((await cli(["pool", "create", pool, "--template", template, "--min-ready", "0", "--max", "1"])).code).toBe(
      0,
    );
    const r = await cli(["pool", "claim", pool, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: "POOL_EMPTY" } });
    expect(r.stderr).toContain(`pool "${pool}" has no ready VM: 0 starting, 0 claimed, max 1`);
    const bad = await cli(["pool", "create", `${pool}x`, "--template", template, "--min-ready", "x", "--max", "1"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--min-ready");
    const missing = await cli(["pool", "create", `${pool}y`, "--template", "nope", "--min-ready", "1", "--max", "1"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('NOT_FOUND: no template "nope"');
    expect((await cli(["pool", "rm", pool])).code).toBe(0);
  });
});
