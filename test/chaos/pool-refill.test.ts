import { randomUUID } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { POOL_LABEL } from "@virtfleet/core";
import { createRedis, FleetClient } from "@virtfleet/fleet";
import { createLabsDeps, PoolService } from "@virtfleet/labs";
import { pino } from "pino";
import { afterAll, describe, expect, inject, it } from "vitest";
import { domainState, type FleetEnv, startWorker, tinySpec, until, type WorkerProcess } from "../e2e/harness.js";
import { domainsNamed, forceCleanNamed } from "../e2e/prefixed-cleanup.js";
import { LocalRedis } from "../fixtures/redis-server.js";

// A pool refilling through a worker SIGKILL (while a pool VM's virt-install runs) and a Redis
// restart still ends with min-ready ready VMs, and nothing leaked: no domain, folder or VM record
// beyond the pool's own. The worker runs the elected controller (the pool manager); killed, its
// successor takes the lock over once it expires.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("chaos: a pool refilling through a worker kill and a Redis restart", () => {
  let redis: LocalRedis | undefined;
  let worker: WorkerProcess | undefined;
  let storageDir = "";
  const pool = `po-chaos-${randomUUID().slice(0, 4)}`;

  afterAll(async () => {
    await worker?.stop("SIGKILL");
    await forceCleanNamed(`${pool}-`, storageDir === "" ? [] : [storageDir]);
    await redis?.stop();
  });

  it("ends with min-ready ready and nothing leaked", async () => {
    redis = await LocalRedis.start({ appendonly: true });
    const f: FleetEnv = {
      redisUrl: redis.url,
      prefix: `chaos-${randomUUID()}`,
      imageDir: inject("imageDir"),
      testRoot: inject("testRoot"),
    };
    const HOST = `po-chaos-${randomUUID().slice(0, 6)}`;
    const start = () =>
      startWorker(f, {
        hostId: HOST,
        env: { VIRTFLEET_CONCURRENCY: "4", VIRTFLEET_CAPACITY_MEMORY_MB: "16384", VIRTFLEET_CAPACITY_VCPUS: "64" },
      });
    worker = await start();
    storageDir = worker.storageDir;
    const client = new FleetClient({ redisUrl: f.redisUrl, prefix: f.prefix });
    const conn = createRedis({ url: f.redisUrl });
    const labs = createLabsDeps({ redis: conn, fleet: client, logger: pino({ level: "silent" }) });
    const deps = labs.deps;
    const pools = new PoolService(deps);
    const log: string[] = [];
    try {
      const { name: _n, ...spec } = tinySpec("unused");
      await deps.templates.put("po-chaos-tiny", { ...spec, guestReady: { strategy: "console" } });
      await pools.create({ name: pool, template: "po-chaos-tiny", minReady: 3, max: 6, refillConcurrency: 3 });
      await until("3 ready", async () => ((await pools.get(pool)).ready === 3 ? true : undefined), 240_000);

      // Two claims: the manager refills at once; kill the worker while a refill's create runs.
      const claims = [await pools.claim(pool, {}), await pools.claim(pool, {})];
      log.push(`claimed ${claims.map((c) => c.vm).join(", ")}`);
      await until(
        "a refill create to be under way",
        async () => {
          const starting = (await pools.vms(pool)).filter((v) => v.state === "starting");
          for (const v of starting) {
            const record = await client.vms.get(v.name);
            if (record?.state === "creating" && v.jobId !== undefined) {
              const job = await client.log.getJob(v.jobId);
              if (job !== undefined && !["queued", "placed"].includes(job.phase)) return v.name;
            }
          }
          return undefined;
        },
        120_000,
      ).then((vm) => log.push(`refill of ${vm} running`));
      worker.child.kill("SIGKILL");
      await worker.exited;
      log.push("SIGKILL worker");
      await sleep(300 + Math.random() * 700);
      worker = await start();
      await sleep(500 + Math.random() * 1500);
      await redis.kill();
      log.push("SIGKILL redis");
      await sleep(1000);
      await redis.resume();
      log.push("redis back");

      const settled = await until(
        "min-ready ready again, nothing starting",
        async () => {
          const v = await pools.get(pool).catch(() => undefined);
          return v !== undefined && v.ready >= 3 && v.starting === 0 ? v : undefined;
        },
        300_000,
      );
      log.push(`pool: ${settled.ready} ready, ${settled.claimed} claimed`);
      expect(settled.ready).toBe(3);
      expect(settled.claimed).toBe(2);

      // Nothing leaked: the host holds exactly the pool's VMs, the registry too (after its orphan
      // sweep has had a pass).
      const held = (await pools.vms(pool)).map((v) => v.name).sort();
      expect(held).toHaveLength(5);
      await until(
        "only the pool's VMs on the host and in the registry",
        async () => {
          const domains = (await domainsNamed(`${pool}-`)).sort();
          const dirs = (await readdir(storageDir)).sort();
          const records = (await client.vms.list())
            .filter((r) => r.labels[POOL_LABEL] === pool)
            .map((r) => r.name)
            .sort();
          const same = (a: string[]) => JSON.stringify(a) === JSON.stringify(held);
          return same(domains) && same(dirs) && same(records) ? true : undefined;
        },
        120_000,
      );
      for (const c of claims) expect(await domainState(c.vm)).toBe("running");
      for (const v of (await pools.vms(pool)).filter((x) => x.state === "ready"))
        expect(await domainState(v.name)).toBe("paused");
      process.stdout.write(`${log.join("\n")}\n`);

      // Removing the pool leaves nothing.
      const removed = await pools.remove(pool, {}, { wait: true });
      expect(removed.vms.sort()).toEqual(held);
      await until("no domain left", async () => ((await domainsNamed(`${pool}-`)).length === 0 ? true : undefined));
      expect(await readdir(storageDir)).toEqual([]);
      expect((await client.vms.list()).filter((r) => r.labels[POOL_LABEL] === pool)).toEqual([]);
      expect(await deps.leases.list()).toEqual([]);
    } finally {
      await labs.close();
      conn.disconnect();
      await client.close();
    }
    await rm(storageDir, { recursive: true, force: true });
  });
});
