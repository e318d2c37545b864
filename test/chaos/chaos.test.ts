import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FleetClient, type JobHandle } from "@virtfleet/fleet";
import { afterAll, describe, expect, inject, it } from "vitest";
import {
  domainState,
  type FleetEnv,
  forceClean,
  jobPhase,
  startWorker,
  tinySpec,
  until,
  virsh,
  virtInstallRunning,
  type WorkerProcess,
} from "../e2e/harness.js";
import { LocalRedis } from "../fixtures/redis-server.js";

const COUNT = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const terminal = new Set(["done", "failed", "cancelled"]);

describe("chaos: kills, a Redis restart, an injected failure, cancels and duplicate requests", () => {
  let redis: LocalRedis;
  let worker: WorkerProcess | undefined;
  let faults: string;
  let storageDir = "";

  let cleanupDirs: string[] = [];

  afterAll(async () => {
    await worker?.stop("SIGKILL");
    await forceClean(cleanupDirs);
    await redis?.stop();
    if (faults) await rm(faults, { recursive: true, force: true });
  });

  it("converges: exactly the VMs that should exist do, nothing leaks, no job is lost", async () => {
    const run = randomUUID().slice(0, 6);
    const HOST = `chaos-${run}`;
    redis = await LocalRedis.start({ appendonly: true });
    faults = await mkdtemp(path.join(os.tmpdir(), "vft-chaos-"));
    const f: FleetEnv = {
      redisUrl: redis.url,
      prefix: `chaos-${randomUUID()}`,
      imageDir: inject("imageDir"),
      testRoot: inject("testRoot"),
    };
    const start = () =>
      startWorker(f, {
        hostId: HOST,
        faultDir: faults,
        env: { VIRTFLEET_CONCURRENCY: "4", VIRTFLEET_CAPACITY_MEMORY_MB: "16384", VIRTFLEET_CAPACITY_VCPUS: "64" },
      });
    worker = await start();
    storageDir = worker.storageDir;
    cleanupDirs = [storageDir];
    const client = new FleetClient({ redisUrl: f.redisUrl, prefix: f.prefix });
    const names = Array.from({ length: COUNT }, (_, i) => `vft-chaos-${run}-${String(i + 1).padStart(2, "0")}`);
    const at = (i: number) => names[i - 1] as string;

    // The faults: one permanent virt-install failure; two VMs slow enough to cancel mid-flight; two
    // slow enough that a kill lands while their virt-install runs.
    await writeFile(path.join(faults, `fail-${at(5)}`), "injected failure");
    for (const i of [7, 8]) await writeFile(path.join(faults, `slow-${at(i)}`), "60");
    for (const i of [3, 12]) await writeFile(path.join(faults, `slow-${at(i)}`), "2");

    const jobs = new Map<string, JobHandle>();
    for (const n of names) jobs.set(n, await client.createVm(tinySpec(n)));
    // Two VMs asked for twice give back the same jobs.
    for (const i of [1, 2]) expect((await client.createVm(tinySpec(at(i)))).id).toBe(jobs.get(at(i))?.id);

    const log: string[] = [];
    const restart = async (why: string) => {
      worker?.child.kill("SIGKILL");
      await worker?.exited;
      log.push(`SIGKILL worker (${why})`);
      await sleep(200 + Math.random() * 800);
      worker = await start();
    };
    const cancelWhenRunning = async (name: string) => {
      const id = jobs.get(name)?.id as string;
      await until(
        `${name} to reach virt-install`,
        async () => ((await jobPhase(client, id)) === "domain.defining" ? true : undefined),
        120_000,
      );
      log.push(`cancel ${name}: ${await client.cancelJob(id)}`);
    };

    const cancels = Promise.all([cancelWhenRunning(at(7)), cancelWhenRunning(at(8))]);
    // Kill 1: while a real virt-install runs.
    await until(
      "a real virt-install to run",
      async () => {
        for (const n of names) if (await virtInstallRunning(n)) return n;
        return undefined;
      },
      120_000,
    ).then((n) => restart(`virt-install of ${n} running`));
    // Kills 2 and 3 at random moments, and a Redis restart between them.
    await sleep(500 + Math.random() * 2500);
    await restart("random");
    await redis.kill();
    log.push("SIGKILL redis");
    await sleep(1000);
    await redis.resume();
    await sleep(500 + Math.random() * 2500);
    await restart("random");
    await cancels;

    const ends = new Map<string, { phase: string; code?: string }>();
    await until(
      "every job to end",
      async () => {
        for (const [name, job] of jobs) {
          if (ends.has(name)) continue;
          const record = await client.log.getJob(job.id);
          if (record !== undefined && terminal.has(record.phase)) {
            ends.set(name, { phase: record.phase, ...(record.error ? { code: record.error.code } : {}) });
            if (record.phase !== "done")
              log.push(`${name}: ${record.phase} ${record.error?.code ?? ""} ${record.message}`);
          }
        }
        return ends.size === jobs.size ? true : undefined;
      },
      300_000,
    ).catch(() => undefined);

    // What is on the host now.
    const domains = (await virsh(["list", "--all", "--name"])).stdout
      .split("\n")
      .map((s) => s.trim())
      .filter((s) => s.startsWith(`vft-chaos-${run}`));
    const dirs = await readdir(storageDir);
    // Storage pools over this run's storage folder (virt-install may define one for a disk path;
    // nothing of ours should be left behind).
    const pools: string[] = [];
    for (const name of (await virsh(["pool-list", "--all", "--name"])).stdout.split("\n").map((p) => p.trim())) {
      if (name === "") continue;
      const xml = (await virsh(["pool-dumpxml", name])).stdout;
      const target = /<path>([^<]*)<\/path>/.exec(xml)?.[1] ?? "";
      if (target === storageDir || target.startsWith(`${storageDir}/`)) pools.push(`pool ${name} (${target})`);
    }
    const should = names.filter((n) => ends.get(n)?.phase === "done");
    // What the fleet records: VM records and the room held on the host.
    const records = (await client.vms.list()).map((v) => v.name).filter((n) => n.startsWith(`vft-chaos-${run}`));
    const held = await client.vms.ledger.claimants(HOST);
    const orphans = [
      ...domains.filter((d) => !should.includes(d)).map((d) => `domain ${d}`),
      ...dirs.filter((d) => !should.includes(d)).map((d) => `folder ${d}`),
      ...pools,
      ...records.filter((n) => !should.includes(n)).map((n) => `VM record ${n}`),
      ...held.filter((n) => !should.includes(n)).map((n) => `room held by ${n}`),
    ];
    expect([...records].sort(), "every VM that should exist has its record").toEqual([...should].sort());
    const count = (p: string) => [...ends.values()].filter((e) => e.phase === p).length;
    const summary = {
      requested: COUNT,
      running: (await Promise.all(should.map(domainState))).filter((s) => s === "running").length,
      failed: count("failed"),
      cancelled: count("cancelled"),
      orphans: orphans.length,
      lost: COUNT - ends.size,
    };
    process.stdout.write(
      `${log.join("\n")}\nchaos: requested ${summary.requested}, running ${summary.running}, failed ${summary.failed}, cancelled ${summary.cancelled}, orphans ${summary.orphans}, lost ${summary.lost}\n`,
    );

    expect(summary.lost).toBe(0);
    expect(orphans).toEqual([]);
    expect(ends.get(at(5))).toEqual({ phase: "failed", code: "COMMAND_FAILED" });
    expect(ends.get(at(7))?.phase).toBe("cancelled");
    expect(ends.get(at(8))?.phase).toBe("cancelled");
    expect(should).toHaveLength(COUNT - 3);
    expect(summary.running).toBe(COUNT - 3);
    expect(domains.sort()).toEqual([...should].sort());
    for (const [, e] of ends) if (e.phase === "failed") expect(e.code).toBeTruthy();
    const registry = await client.vms.list();
    expect(registry.map((v) => v.name).sort()).toEqual([...should].sort());
    expect(registry.every((v) => v.state === "running" && v.hostId === HOST)).toBe(true);

    // Destroy everything: nothing of virtfleet's is left.
    const destroys = await Promise.all(should.map((n) => client.destroyVm(n)));
    const dEnds = await Promise.all(destroys.map((d) => d.wait({ timeoutMs: 120_000 })));
    expect(dEnds.every((e) => e.phase === "done")).toBe(true);
    await client.close();
    const left = (await virsh(["list", "--all", "--name"])).stdout
      .split("\n")
      .filter((s) => s.startsWith(`vft-chaos-${run}`));
    const leftDirs = await readdir(storageDir);
    if (left.length + leftDirs.length > 0) await forceClean([storageDir]);
    expect({ left, leftDirs }).toEqual({ left: [], leftDirs: [] });
    await rm(storageDir, { recursive: true, force: true });
  });
});
