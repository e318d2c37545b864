import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { VirtfleetError } from "@virtfleet/core";
import { FleetClient, type JobHandle } from "@virtfleet/fleet";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  forceClean,
  leftovers,
  runCli,
  startWorker,
  tinySpec,
  until,
  vmName,
  type WorkerProcess,
} from "./harness.js";

/** Three hosts on this machine, each with room for exactly 10 VMs of 192 MiB and 1 vCPU. */
const SLOT_MIB = 192;
const PER_HOST = 10;
const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
const capacity = {
  VIRTFLEET_CAPACITY_MEMORY_MB: String(SLOT_MIB * PER_HOST),
  VIRTFLEET_CAPACITY_VCPUS: String(PER_HOST),
  VIRTFLEET_CONCURRENCY: "4",
};
const workers = new Map<string, WorkerProcess>();
let client: FleetClient;

async function destroyAll(names: string[]): Promise<void> {
  const ends = await Promise.all(names.map(async (n) => (await client.destroyVm(n)).wait({ timeoutMs: 120_000 })));
  expect(ends.filter((e) => e.phase !== "done")).toEqual([]);
}

async function hostOf(name: string): Promise<string | undefined> {
  return (await client.vms.get(name))?.hostId;
}

beforeAll(async () => {
  client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
  const labels: Record<string, string> = { fa: "rack=r1", fb: "rack=r1", fc: "rack=r2,ssd=yes" };
  await Promise.all(
    Object.entries(labels).map(async ([hostId, l]) => {
      workers.set(hostId, await startWorker(fleet, { hostId, env: { ...capacity, VIRTFLEET_LABELS: l } }));
    }),
  );
});

afterAll(async () => {
  await client?.close();
  for (const w of workers.values()) await w.stop("SIGKILL");
  const dirs = [...workers.values()].map((w) => w.storageDir);
  const left = await leftovers();
  const files = (await Promise.all(dirs.map(filesIn))).flat();
  await forceClean(dirs);
  expect({ ...left, files }).toEqual({ domains: [], pools: [], files: [] });
});

describe("a fleet of three hosts on one machine", () => {
  it("40 concurrent requests for a fleet with room for 30: 30 placed, none overcommits, 10 get NO_CAPACITY", async () => {
    const names = Array.from({ length: 40 }, (_, i) => vmName(`cap${i}`));
    const results = await Promise.all(
      names.map((n) =>
        client.createVm(tinySpec(n, { memoryMiB: SLOT_MIB })).then(
          (job) => ({ name: n, job }),
          (error: unknown) => ({ name: n, error: error as VirtfleetError }),
        ),
      ),
    );
    const placed = results.filter((r): r is { name: string; job: JobHandle } => "job" in r);
    const refused = results.filter((r): r is { name: string; error: VirtfleetError } => "error" in r);
    expect(placed).toHaveLength(30);
    expect(refused.map((r) => r.error.code)).toEqual(Array(10).fill("NO_CAPACITY"));
    for (const view of await client.hosts.list()) {
      expect(view.allocation.allocated).toEqual({ memoryMiB: SLOT_MIB * PER_HOST, vcpus: PER_HOST });
    }
    const ends = await Promise.all(placed.map((p) => p.job.wait({ timeoutMs: 240_000 })));
    expect(ends.filter((e) => e.phase !== "done")).toEqual([]);
    const perHost = new Map<string, number>();
    for (const p of placed) {
      expect(await domainState(p.name)).toBe("running");
      const h = (await hostOf(p.name)) as string;
      perHost.set(h, (perHost.get(h) ?? 0) + 1);
    }
    expect(Object.fromEntries(perHost)).toEqual({ fa: PER_HOST, fb: PER_HOST, fc: PER_HOST });
    for (const r of refused) expect(await client.vms.get(r.name)).toBeUndefined();

    // What an operator sees.
    const hosts = JSON.parse((await runCli(["hosts", "--json"], cliEnv(fleet))).stdout) as {
      hostId: string;
      up: boolean;
      allocated: { vcpus: number };
    }[];
    expect(hosts.map((h) => [h.hostId, h.up, h.allocated.vcpus])).toEqual([
      ["fa", true, PER_HOST],
      ["fb", true, PER_HOST],
      ["fc", true, PER_HOST],
    ]);
    const ls = JSON.parse((await runCli(["ls", "--json", "--host", "fb"], cliEnv(fleet))).stdout) as {
      hostId: string;
      state: string;
    }[];
    expect(ls).toHaveLength(PER_HOST);
    expect(ls.every((v) => v.hostId === "fb" && v.state === "running")).toBe(true);

    // A full fleet refuses through the CLI too: exit 1, NO_CAPACITY in --json.
    const full = await runCli(
      [
        "create",
        "--name",
        vmName("full"),
        "--memory",
        String(SLOT_MIB),
        "--disk",
        "size=1,backing=tiny",
        "--boot",
        "kernel=tiny,initrd=tiny",
        "--network",
        "none",
        "--json",
      ],
      cliEnv(fleet),
    );
    expect(full.code).toBe(1);
    expect(JSON.parse(full.stdout.trim())).toMatchObject({ error: { code: "NO_CAPACITY" } });

    await destroyAll(placed.map((p) => p.name));
    for (const view of await client.hosts.list()) expect(view.allocation.allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
  });

  it("pinned, labelled and anti-affinity requests land as asked", async () => {
    const pinned = vmName("pin");
    const job = await client.createVm(tinySpec(pinned), { host: "fb" });
    expect((await job.wait({ timeoutMs: 60_000 })).phase).toBe("done");
    expect(await hostOf(pinned)).toBe("fb");
    await expect(client.createVm(tinySpec(vmName("nohost")), { host: "nope" })).rejects.toMatchObject({
      code: "HOST_NOT_FOUND",
    });

    const labelled = vmName("lab");
    await (await client.createVm(tinySpec(labelled), { labels: { rack: "r2" } })).wait({ timeoutMs: 60_000 });
    expect(await hostOf(labelled)).toBe("fc");
    await expect(client.createVm(tinySpec(vmName("nolab")), { labels: { rack: "r9" } })).rejects.toMatchObject({
      code: "NO_CAPACITY",
    });

    const group = Array.from({ length: 3 }, (_, i) => vmName(`aa${i}`));
    // Asked for at once: the group still ends up on three different hosts.
    const jobs = await Promise.all(group.map((n) => client.createVm(tinySpec(n), { group: "web" })));
    await Promise.all(jobs.map((j) => j.wait({ timeoutMs: 60_000 })));
    expect(new Set(await Promise.all(group.map(hostOf))).size).toBe(3);

    // Drain: nothing new lands on a drained host.
    await client.hosts.drain("fa");
    const after = vmName("drn");
    await (await client.createVm(tinySpec(after))).wait({ timeoutMs: 60_000 });
    expect(await hostOf(after)).not.toBe("fa");
    await client.hosts.drain("fa", false);

    await destroyAll([pinned, labelled, ...group, after]);
  });

  it("a host SIGKILLed with jobs waiting in its queue: they finish on other hosts; the running one fails HOST_LOST", async () => {
    const faults = await mkdtemp(path.join(os.tmpdir(), "vft-fleet-"));
    for (const h of ["fa", "fb", "fc"]) await client.hosts.drain(h);
    const fd = await startWorker(fleet, {
      hostId: "fd",
      faultDir: faults,
      env: { ...capacity, VIRTFLEET_CONCURRENCY: "1" },
    });
    workers.set("fd", fd);
    const names = Array.from({ length: 3 }, (_, i) => vmName(`lost${i}`));
    for (const n of names) await writeFile(path.join(faults, `slow-${n}`), "30");
    const jobs: JobHandle[] = [];
    for (const n of names) jobs.push(await client.createVm(tinySpec(n)));
    for (const n of names) expect(await hostOf(n)).toBe("fd");
    const [first] = jobs;
    const [lost] = names;
    assert(first !== undefined && lost !== undefined);
    await until("fd to start a job", async () =>
      (await client.log.getJob(first.id))?.phase === "domain.defining" ? true : undefined,
    );
    for (const h of ["fa", "fb", "fc"]) await client.hosts.drain(h, false);
    fd.child.kill("SIGKILL");
    await fd.exited;

    const ends = await Promise.all(jobs.map((j) => j.wait({ timeoutMs: 120_000 })));
    expect(ends[0]).toMatchObject({ phase: "failed", error: { code: "HOST_LOST" } });
    expect(ends.slice(1).map((e) => e.phase)).toEqual(["done", "done"]);
    for (const n of names.slice(1)) {
      expect(["fa", "fb", "fc"]).toContain(await hostOf(n));
      expect(await domainState(n)).toBe("running");
    }
    expect(await client.vms.get(lost)).toBeUndefined();
    expect((await client.hosts.get("fd"))?.allocation.allocated).toEqual({ memoryMiB: 0, vcpus: 0 });

    // The host comes back: its reconciliation removes what the lost job left.
    await writeFile(path.join(faults, `slow-${lost}`), "0");
    const back = await startWorker(fleet, { hostId: "fd", faultDir: faults, env: capacity });
    workers.set("fd", back);
    await until("fd to reconcile", async () => (back.logs().includes("reconciled host") ? true : undefined));
    expect(await domainState(lost)).toBeUndefined();
    expect(await filesIn(fd.storageDir)).toEqual([]);
    await destroyAll(names.slice(1));
  });
});
