import { type ClaimResult, POOL_LABEL, VirtfleetError } from "@virtfleet/core";
import { FleetClient } from "@virtfleet/fleet";
import { Redis } from "ioredis";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest } from "../../../../test/fixtures/redis-test.js";
import type { LabsDeps, PowerControl } from "../deps.js";
import { LabKeys } from "../keys.js";
import { LeaseStore } from "../leases/lease-store.js";
import { TemplateStore } from "../templates/template-store.js";
import { destroyPoolVm } from "./pool-destroy.js";
import { PoolManager } from "./pool-manager.js";
import { PoolService } from "./pool-service.js";

// Pools against a real Redis, with no worker: ready VMs are seeded as the manager would write them,
// or the manager's create jobs are ended by hand (a `done` event, as a worker would append).

const spec = { memoryMiB: 128, vcpus: 1, disks: [{ sizeGiB: 1, backing: "tiny" }] };

/** A power control that records what it was asked, and fails for the VMs put in `failing`. */
function fakePower() {
  const failing = new Set<string>();
  const calls: { host: string; vm: string; action: string }[] = [];
  const power: PowerControl = {
    async power(host, vm, action) {
      calls.push({ host, vm, action });
      if (failing.has(vm)) throw new VirtfleetError("COMMAND_FAILED", `cannot ${action} ${vm}`);
      return { state: action === "suspend" ? "paused" : "running" };
    },
  };
  return { power, calls, failing };
}

function makeDeps(redisUrl: string, prefix: string, power: PowerControl) {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const keys = new LabKeys(prefix);
  const fleet = new FleetClient({ redisUrl, prefix });
  const deps: LabsDeps = {
    redis,
    keys,
    fleet,
    templates: new TemplateStore(redis, keys),
    leases: new LeaseStore(redis, keys),
    power,
    logger: pino({ level: "silent" }),
  };
  const close = async () => {
    await fleet.close();
    redis.disconnect();
  };
  return { deps, close };
}

/** Puts `count` ready VMs into a pool as the manager would (record + ready set). */
async function seedReady(redis: Redis, keys: LabKeys, pool: string, count: number, version = 1, from = 0) {
  const m = redis.multi();
  for (let i = from; i < from + count; i++) {
    const vm = `${pool}-v${version}-${i}`;
    m.hset(keys.poolVm(pool, vm), {
      vm,
      host: "h1",
      addresses: JSON.stringify([`127.0.0.${(i % 250) + 1}`]),
      templateVersion: String(version),
      jobId: `create-${i}`,
      createdAt: String(Date.now() - 1000),
      readyAt: String(Date.now() - 1000 + i),
    });
    m.zadd(keys.poolReady(pool), Date.now() - 1000 + i, vm);
  }
  await m.exec();
}

/** Ends every create job of the pool's starting VMs as a worker would: `done`, VM running on h1. */
async function finishStarting(deps: LabsDeps, pool: string): Promise<string[]> {
  const starting = await deps.redis.hgetall(deps.keys.poolStarting(pool));
  for (const [vm, jobId] of Object.entries(starting)) {
    await deps.fleet.log.append({
      jobId,
      kind: "create",
      vm,
      phase: "done",
      message: "ready",
      host: "h1",
      vmState: { key: deps.fleet.keys.vm(vm), state: "running", addresses: ["127.0.0.9"] },
    });
  }
  return Object.keys(starting);
}

/** A manager pass, the create jobs it started ended (as a worker would), and the pass that counts them ready. */
async function fillOnce(manager: PoolManager, deps: LabsDeps, pool: string): Promise<void> {
  await manager.tick();
  await finishStarting(deps, pool);
  await manager.tick();
}

interface PoolFixtures {
  /** The power control the test's deps use: what it was asked, and the VMs it fails for. */
  power: ReturnType<typeof fakePower>;
  /** Labs deps on the test's prefix with that power control; closed after the test. */
  deps: LabsDeps;
  /** A pool service on `deps`. */
  pools: PoolService;
  /** A pool manager on `deps` (no timer: the test calls tick()) with host h1 up; closed after the test. */
  manager: PoolManager;
}

/** `test` with the pools' set-up as fixtures; a test gets only those it names. */
const test = redisTest.extend<PoolFixtures>({
  // biome-ignore lint/correctness/noEmptyPattern: vitest fixtures take their dependencies by destructuring
  power: async ({}, use) => {
    await use(fakePower());
  },
  deps: async ({ redisUrl, prefix, power }, use) => {
    const { deps, close } = makeDeps(redisUrl, prefix, power.power);
    try {
      await use(deps);
    } finally {
      await close();
    }
  },
  pools: async ({ deps }, use) => {
    await use(new PoolService(deps));
  },
  manager: async ({ deps }, use) => {
    const manager = new PoolManager(deps, { intervalMs: 60_000 });
    try {
      await hostUp(deps.fleet, "h1", { vcpus: { total: 16, capacity: 16 } });
      await use(manager);
    } finally {
      await manager.close();
    }
  },
});

describe("pool claims", () => {
  test("two hundred concurrent claims on 150 ready VMs: each VM handed out once, 50 POOL_EMPTY", async ({
    redisUrl,
    prefix,
    redis,
    power: { power, calls },
    deps,
    pools,
  }) => {
    await deps.templates.put("t1", spec);
    await pools.create({ name: "po1", template: "t1", minReady: 3, max: 200 });
    await seedReady(redis, deps.keys, "po1", 150);
    // Independent connections, as many API processes would have.
    const services = Array.from({ length: 4 }, () => makeDeps(redisUrl, prefix, power));
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        new PoolService((services[i % 4] as { deps: LabsDeps }).deps).claim("po1", { ttl: "10m" }),
      ),
    );
    for (const s of services) await s.close();
    const got = results.filter((r): r is PromiseFulfilledResult<ClaimResult> => r.status === "fulfilled");
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(got).toHaveLength(150);
    expect(new Set(got.map((r) => r.value.vm)).size).toBe(150);
    expect(new Set(got.map((r) => r.value.leaseId)).size).toBe(150);
    expect(failed).toHaveLength(50);
    for (const f of failed) expect((f.reason as VirtfleetError).code).toBe("POOL_EMPTY");
    // Claimed: out of ready, in claimed with its lease; one lease each, naming the VM.
    expect(await redis.zcard(deps.keys.poolReady("po1"))).toBe(0);
    expect(await redis.hlen(deps.keys.poolClaimed("po1"))).toBe(150);
    const one = got[0]?.value as ClaimResult;
    expect(one.host).toBe("h1");
    expect(one.addresses).toHaveLength(1);
    const lease = await deps.leases.get(one.leaseId);
    expect(lease).toMatchObject({ kind: "claim", target: one.vm, pool: "po1" });
    expect(Date.parse(one.expiresAt) - Date.now()).toBeGreaterThan(9 * 60_000);
    expect(await redis.zcard(deps.keys.leases())).toBe(150);
    // A paused pool (the default): every claimed VM was resumed, once.
    expect(
      calls
        .filter((c) => c.action === "resume")
        .map((c) => c.vm)
        .sort(),
    ).toEqual(got.map((r) => r.value.vm).sort());
    // Claim times recorded (for targetReady: auto).
    expect(await redis.zcard(deps.keys.poolClaims("po1"))).toBe(150);
  });

  test("a VM of the current template version is preferred; one that fails to resume is dropped and the next given", async ({
    redis,
    power: { failing },
    deps,
    pools,
  }) => {
    await deps.templates.put("t1", spec);
    await deps.templates.put("t1", { ...spec, memoryMiB: 256 }); // version 2
    await pools.create({ name: "po2", template: "t1", minReady: 1, max: 10 });
    await seedReady(redis, deps.keys, "po2", 2, 1); // older, of version 1
    await seedReady(redis, deps.keys, "po2", 2, 2, 10);
    failing.add("po2-v2-10");
    const first = await pools.claim("po2", {});
    expect(first.vm).toBe("po2-v2-11");
    // The one that failed to resume is gone for good: not ready, not claimed, no lease.
    expect(await redis.zscore(deps.keys.poolReady("po2"), "po2-v2-10")).toBeNull();
    expect(await redis.hexists(deps.keys.poolClaimed("po2"), "po2-v2-10")).toBe(0);
    expect(await redis.zcard(deps.keys.leases())).toBe(1);
    // Then the old version's VMs (claimable while nothing newer is ready).
    expect((await pools.claim("po2", {})).vm).toBe("po2-v1-0");
  });

  test("with none ready a claim waits for the next one; after `wait` it is POOL_EMPTY saying why", async ({
    redis,
    deps,
    pools,
  }) => {
    await deps.templates.put("t1", spec);
    await pools.create({ name: "po3", template: "t1", minReady: 1, max: 4, idle: "run" });
    await redis.hset(deps.keys.poolStarting("po3"), "po3-aaaaaaaa", "create-x");
    const error = await pools.claim("po3", { wait: "200ms" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VirtfleetError);
    expect((error as VirtfleetError).code).toBe("POOL_EMPTY");
    expect((error as VirtfleetError).message).toContain('pool "po3" has no ready VM: 1 starting');
    const waiting = pools.claim("po3", { wait: "20s" });
    await new Promise((r) => setTimeout(r, 300));
    await seedReady(redis, deps.keys, "po3", 1);
    await redis.publish(deps.keys.poolsChannel(), "po3");
    const got = await waiting;
    expect(got.vm).toBe("po3-v1-0");
  });

  test("release destroys nothing twice and forgets the claim and its lease; the lease handler is idempotent", async ({
    redis,
    deps,
    pools,
  }) => {
    await deps.templates.put("t1", spec);
    await pools.create({ name: "po4", template: "t1", minReady: 1, max: 4 });
    await seedReady(redis, deps.keys, "po4", 2);
    const a = await pools.claim("po4", {});
    const b = await pools.claim("po4", {});
    expect(await pools.release(a.vm)).toEqual({ vm: a.vm, pool: "po4" });
    expect(await redis.hexists(deps.keys.poolClaimed("po4"), a.vm)).toBe(0);
    expect(await deps.leases.get(a.leaseId)).toBeUndefined();
    const again = await pools.release(a.vm).catch((e: unknown) => e);
    expect((again as VirtfleetError).code).toBe("NOT_FOUND");
    expect((again as VirtfleetError).field).toBe("vm");
    const lease = await deps.leases.get(b.leaseId);
    if (lease === undefined) throw new Error("no lease");
    await pools.leaseHandler.expire(lease, "expired");
    await pools.leaseHandler.expire(lease, "expired");
    expect(await redis.hlen(deps.keys.poolClaimed("po4"))).toBe(0);
    expect(await redis.exists(deps.keys.poolVm("po4", b.vm))).toBe(0);
  });
});

describe("pool settings", () => {
  test("create checks the template and the name; tenants see only their own pools", async ({ deps, pools }) => {
    const missing = await pools.create({ name: "po5", template: "nope", minReady: 1, max: 2 }).catch((e) => e);
    expect(missing).toMatchObject({ code: "NOT_FOUND", field: "template" });
    const bad = await pools.create({ name: "po5", template: "t1", minReady: 3, max: 2 }).catch((e) => e);
    expect(bad).toMatchObject({ code: "INVALID_SPEC", field: "minReady" });
    await deps.templates.put("t1", spec);
    const view = await pools.create(
      { name: "po5", template: "t1", minReady: 1, max: 2, maxReadyAge: "1h" },
      { tenant: "acme" },
    );
    expect(view).toMatchObject({
      name: "po5",
      template: "t1",
      templateVersion: 1,
      maxReadyAgeMs: 3_600_000,
      refillConcurrency: 2,
      idle: "pause",
      targetReady: "min",
      claimTtlMs: 30 * 60_000,
      maxLifetimeMs: 24 * 3_600_000,
      ready: 0,
      target: 1,
      tenant: "acme",
    });
    const clash = await pools.create({ name: "po5", template: "t1", minReady: 1, max: 2 }).catch((e) => e);
    expect(clash).toMatchObject({ code: "NAME_CLASH", field: "name" });
    expect((await pools.list({ tenant: "acme" })).map((p) => p.name)).toEqual(["po5"]);
    expect(await pools.list({ tenant: "other" })).toEqual([]);
    expect(await pools.get("po5", { tenant: "other" }).catch((e) => e)).toMatchObject({ code: "NOT_FOUND" });
    expect(await pools.claim("po5", {}, { tenant: "other" }).catch((e) => e)).toMatchObject({ code: "NOT_FOUND" });
    const updated = await pools.update("po5", { minReady: 2, idle: "run" }, { tenant: "acme" });
    expect(updated).toMatchObject({ minReady: 2, idle: "run", max: 2 });
    expect(await pools.update("po5", { minReady: 5 }).catch((e) => e)).toMatchObject({
      code: "INVALID_SPEC",
      field: "minReady",
    });
  });
});

describe("pool manager", () => {
  test("fills to minReady within refillConcurrency, pauses ready VMs, refills after a claim, never past max", async ({
    redis,
    power: { calls },
    deps,
    pools,
    manager,
  }) => {
    await deps.templates.put("t1", { ...spec, guestReady: { strategy: "console" } });
    await pools.create({ name: "po6", template: "t1", minReady: 3, max: 4, refillConcurrency: 2 });
    await manager.tick();
    let view = await pools.get("po6");
    expect(view).toMatchObject({ ready: 0, starting: 2 });
    expect(view.below).toContain("2 starting");
    // The VMs carry the pool's label and the template's spec.
    const starting = Object.keys(await redis.hgetall(deps.keys.poolStarting("po6")));
    for (const vm of starting) {
      expect(vm).toMatch(/^po6-[a-z0-9]{8}$/);
      expect((await deps.fleet.vms.get(vm))?.labels[POOL_LABEL]).toBe("po6");
    }
    await finishStarting(deps, "po6");
    await manager.tick();
    view = await pools.get("po6");
    expect(view).toMatchObject({ ready: 2, starting: 1 });
    expect(
      calls
        .filter((c) => c.action === "suspend")
        .map((c) => c.vm)
        .sort(),
    ).toEqual(starting.sort());
    await finishStarting(deps, "po6");
    await manager.tick();
    expect(await pools.get("po6")).toMatchObject({ ready: 3, starting: 0, claimed: 0 });
    expect((await pools.get("po6")).below).toBeUndefined();
    // Two claims: max 4 leaves room for one more VM only (2 claimed + 1 ready + 1 starting).
    await pools.claim("po6", {});
    await pools.claim("po6", {});
    await manager.tick();
    view = await pools.get("po6");
    expect(view).toMatchObject({ ready: 1, starting: 1, claimed: 2 });
    expect(view.below).toContain("at max (4 VMs)");
  });

  test("a claim wakes the manager at once (no timer); a template change replaces ready VMs, not claimed ones", async ({
    deps,
    pools,
    manager,
  }) => {
    await deps.templates.put("t1", spec);
    await pools.create({ name: "po7", template: "t1", minReady: 2, max: 5, idle: "run" });
    await fillOnce(manager, deps, "po7");
    expect(await pools.get("po7")).toMatchObject({ ready: 2 });
    const claimed = await pools.claim("po7", {});
    // No tick called: the claim's message starts one.
    await expect.poll(async () => (await pools.get("po7")).starting, { timeout: 5000, interval: 50 }).toBe(1);
    await finishStarting(deps, "po7");
    await manager.tick();
    const before = (await pools.vms("po7")).filter((v) => v.state === "ready").map((v) => v.name);
    expect(before).toHaveLength(2);
    await deps.templates.put("t1", { ...spec, memoryMiB: 256 });
    expect(await pools.get("po7")).toMatchObject({ stale: 2, templateVersion: 2 });
    // Replacements start; the stale ones stay claimable until they are ready.
    await manager.tick();
    expect(await pools.get("po7")).toMatchObject({ starting: 2, ready: 2, stale: 2 });
    for (let i = 0; i < 4; i++) {
      await finishStarting(deps, "po7");
      await manager.tick();
    }
    const vms = await pools.vms("po7");
    const ready = vms.filter((v) => v.state === "ready");
    expect(ready).toHaveLength(2);
    for (const v of ready) {
      expect(before).not.toContain(v.name);
      expect(v.templateVersion).toBe(2);
    }
    expect(vms.filter((v) => v.state === "claimed").map((v) => v.name)).toEqual([claimed.vm]);
    // Retired VMs are being destroyed: a destroy job each.
    for (const vm of before) expect((await deps.fleet.vms.get(vm))?.state).toBe("destroying");
  });

  test("pool rm takes every VM (starting, ready, claimed) and ends the claims' leases; the manager destroys what still carries the label", async ({
    prefix,
    redis,
    deps,
    pools,
    manager,
  }) => {
    await deps.templates.put("t1", spec);
    await pools.create({ name: "po8", template: "t1", minReady: 2, max: 4, idle: "run" });
    await fillOnce(manager, deps, "po8");
    const claim = await pools.claim("po8", {});
    await manager.tick();
    const all = (await pools.vms("po8")).map((v) => v.name);
    expect(all).toHaveLength(3);
    const removed = await pools.remove("po8");
    expect(removed.vms.sort()).toEqual(all.sort());
    expect(await deps.leases.get(claim.leaseId)).toBeUndefined();
    expect(await pools.get("po8").catch((e) => e)).toMatchObject({ code: "NOT_FOUND" });
    expect(await redis.keys(`${prefix}:pool:po8*`)).toEqual([]);
    for (const vm of all) {
      const state = (await deps.fleet.vms.get(vm))?.state;
      expect(state === undefined || state === "destroying").toBe(true);
    }
    // A VM the pool lost track of (a crash between steps) is destroyed by the manager's sweep.
    await pools.create({ name: "po9", template: "t1", minReady: 0, max: 2 });
    await deps.fleet.createVm({ ...spec, name: "po9-lostlost", labels: { [POOL_LABEL]: "po9" } });
    await deps.fleet.log.append({
      jobId: (await deps.fleet.vms.get("po9-lostlost"))?.jobId ?? "",
      kind: "create",
      vm: "po9-lostlost",
      phase: "done",
      message: "ready",
      host: "h1",
      vmState: { key: deps.fleet.keys.vm("po9-lostlost"), state: "running" },
    });
    await manager.tick();
    expect((await deps.fleet.vms.get("po9-lostlost"))?.state).toBe("destroying");
  });

  test("pool rm --wait returns once no VM of the pool is left, and fails naming a VM whose destroy failed", async ({
    deps,
    pools,
    manager,
  }) => {
    const destroys = new Map<string, string>();
    const destroyVm = deps.fleet.destroyVm.bind(deps.fleet);
    deps.fleet.destroyVm = async (...args: Parameters<typeof destroyVm>) => {
      const job = await destroyVm(...args);
      destroys.set(String(args[0]), job.id);
      return job;
    };
    /** Ends a destroy job as a worker would: `done` (the VM forgotten) or `failed`. */
    const end = async (vm: string, phase: "done" | "failed") => {
      const jobId = destroys.get(vm) ?? "";
      await deps.fleet.log.append({
        jobId,
        kind: "destroy",
        vm,
        phase,
        message: phase,
        host: "h1",
        ...(phase === "failed" ? { error: { code: "COMMAND_TIMEOUT", message: "virsh destroy timed out" } } : {}),
      });
      if (phase === "done") await deps.fleet.vms.forget(vm);
    };
    const fill = async (pool: string) => {
      await pools.create({ name: pool, template: "t1", minReady: 2, max: 2, idle: "run" });
      await fillOnce(manager, deps, pool);
      return (await pools.vms(pool)).map((v) => v.name).sort();
    };
    await deps.templates.put("t1", spec);
    const [a, b] = (await fill("po11")) as [string, string];
    const [c, d] = (await fill("po12")) as [string, string];
    // Only `pool rm` destroys from here: the manager's sweep (woken by the removal) would destroy the
    // removed pools' VMs too, with destroy jobs of its own.
    await manager.close();
    // Both destroys done: it returns only after the last VM is forgotten.
    let settled = false;
    const removing = pools.remove("po11", {}, { wait: true }).finally(() => {
      settled = true;
    });
    await expect.poll(() => destroys.size, { timeout: 5000, interval: 20 }).toBe(2);
    await end(a, "done");
    await new Promise((r) => setTimeout(r, 700));
    expect(settled).toBe(false);
    await end(b, "done");
    expect((await removing).vms.sort()).toEqual([a, b]);
    // One destroy failed: an error naming that VM and why.
    destroys.clear();
    const failing = pools.remove("po12", {}, { wait: true }).catch((e: unknown) => e);
    await expect.poll(() => destroys.size, { timeout: 5000, interval: 20 }).toBe(2);
    await end(c, "done");
    await end(d, "failed");
    const error = await failing;
    expect(error).toBeInstanceOf(VirtfleetError);
    expect(error).toMatchObject({ code: "COMMAND_TIMEOUT" });
    expect((error as Error).message).toBe(
      `pool "po12" removed, but destroying its VMs failed: ${d}: virsh destroy timed out`,
    );
  });

  test("asked at once by several (pool rm and the manager's sweep), a pool VM is destroyed by one destroy job", async ({
    deps,
    pools,
    manager,
  }) => {
    await deps.templates.put("t1", spec);
    await pools.create({ name: "po13", template: "t1", minReady: 1, max: 1, idle: "run" });
    await fillOnce(manager, deps, "po13");
    await manager.close();
    const [vm] = (await pools.vms("po13")).map((v) => v.name) as [string];
    const jobs: string[] = [];
    const destroyVm = deps.fleet.destroyVm.bind(deps.fleet);
    deps.fleet.destroyVm = async (...args: Parameters<typeof destroyVm>) => {
      const job = await destroyVm(...args);
      jobs.push(job.id);
      return job;
    };
    const answers = await Promise.all(Array.from({ length: 5 }, () => destroyPoolVm(deps, vm)));
    expect(jobs).toHaveLength(1);
    expect(answers.filter((a) => a !== undefined)).toEqual(jobs);
    expect((await deps.fleet.vms.get(vm))?.state).toBe("destroying");
    // Once that destroy has been asked for, later calls ask nothing more.
    expect(await destroyPoolVm(deps, vm)).toBeUndefined();
    expect(jobs).toHaveLength(1);
  });

  test("a pool removed while the manager is in a pass: the manager makes no VM for it and writes none of its keys back", async ({
    prefix,
    redis,
    deps,
    pools,
    manager,
  }) => {
    await deps.templates.put("t1", spec);
    await pools.create({ name: "po10", template: "t1", minReady: 2, max: 4, idle: "run" });
    await manager.tick();
    const first = Object.keys(await redis.hgetall(deps.keys.poolStarting("po10")));
    expect(first).toHaveLength(2);
    // `pool rm` lands while the manager follows the VMs being made (after it read the pool).
    const log = deps.fleet.log;
    const getJob = log.getJob.bind(log);
    let removed = false;
    log.getJob = async (jobId: string) => {
      if (!removed) {
        removed = true;
        await pools.remove("po10");
      }
      return getJob(jobId);
    };
    await manager.tick();
    expect(removed).toBe(true);
    // Nothing made for the removed pool, and no key of it written back.
    const labelled = (await deps.fleet.vms.list()).filter((r) => r.labels[POOL_LABEL] === "po10");
    for (const r of labelled) expect(first).toContain(r.name);
    expect(await redis.keys(`${prefix}:pool:po10*`)).toEqual([]);
    expect(await redis.sismember(deps.keys.pools(), "po10")).toBe(0);
  });
});
