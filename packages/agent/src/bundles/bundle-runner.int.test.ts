import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type CreateJobData, VirtfleetError } from "@virtfleet/core";
import { FleetClient } from "@virtfleet/fleet";
import type { CommandRunner } from "@virtfleet/hypervisor";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { waitingIds } from "../../../../test/fixtures/host-queue.js";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest } from "../../../../test/fixtures/redis-test.js";
import { HostAgent, type JobExecutor } from "../host-agent.js";

/** Answers the few virsh calls a worker makes at start (no domain here); runs nothing. */
const runner: CommandRunner = {
  async run(_file, args) {
    if (args.includes("nodeinfo")) return { stdout: "CPU(s): 8\nMemory size: 16777216 KiB\n", stderr: "" };
    return { stdout: "", stderr: "" };
  },
};

const spec = (name: string) => ({ name, memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A scripted executor: records each create it is asked to run and how many run at once. A VM named
 * `*-flaky` fails its first attempt (a retryable error), `*-bad` fails for good, `*-hold` runs until
 * its signal aborts; any other takes 40 ms.
 */
function scripted() {
  const runs: string[] = [];
  let now = 0;
  let most = 0;
  const holding = new Set<string>();
  const rolledBack: string[] = [];
  /** `*-gate` VMs that went on past their refused events. */
  const reached: string[] = [];
  /** `*-gate` VMs wait here after their first event, until let go. */
  let letGo: () => void = () => undefined;
  const gate = new Promise<void>((r) => {
    letGo = r;
  });
  const executor: JobExecutor = {
    async create(data: CreateJobData, report, signal) {
      const vm = data.spec.name;
      runs.push(vm);
      now++;
      most = Math.max(most, now);
      try {
        await report("disk.creating", "scripted");
        if (vm.endsWith("-flaky") && runs.filter((r) => r === vm).length === 1) throw new Error("flaky once");
        if (vm.endsWith("-bad")) throw new VirtfleetError("INVALID_SPEC", "bad for good");
        if (vm.endsWith("-gate")) {
          holding.add(vm);
          await gate;
          await report("disk.ready", "scripted");
          await report("domain.defining", "scripted");
          reached.push(vm);
        }
        if (vm.endsWith("-hold")) {
          holding.add(vm);
          await new Promise<void>((_, reject) => {
            signal?.addEventListener("abort", () => reject(new VirtfleetError("CANCELLED", "aborted")), { once: true });
          });
        }
        await sleep(40);
      } finally {
        now--;
        holding.delete(vm);
      }
    },
    async destroy() {},
    async rollback(vm) {
      rolledBack.push(vm);
    },
  };
  return { executor, runs, holding, rolledBack, reached, letGo: () => letGo(), most: () => most };
}

type Agent = { close: () => Promise<void> };

/** Starts host bd-h1's worker in a directory of its own; `close` stops it and removes the directory (once). */
async function startAgent(
  redisUrl: string,
  prefix: string,
  executor: JobExecutor,
  concurrency: number,
): Promise<Agent> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vf-bundle-"));
  const agent = new HostAgent({
    redisUrl,
    prefix,
    hostId: "bd-h1",
    storageDir: dir,
    imageDir: dir,
    virtType: "qemu",
    concurrency,
    capacityMemoryMiB: 65536,
    capacityVcpus: 64,
    overcommitDisk: 1 << 20,
    logger: pino({ level: "silent" }),
    runner,
    executor,
    shutdownTimeoutMs: 300,
  });
  await agent.start();
  let closing: Promise<void> | undefined;
  return {
    close: () =>
      (closing ??= (async () => {
        await agent.close();
        await rm(dir, { recursive: true, force: true });
      })()),
  };
}

/**
 * `test` with a producer (`client`) on the test's prefix and `startWorker(executor, concurrency)`:
 * every worker started is closed after the test, before the client.
 */
const test = redisTest.extend<{
  client: FleetClient;
  startWorker: (executor: JobExecutor, concurrency: number) => Promise<Agent>;
}>({
  client: async ({ redisUrl, prefix }, use) => {
    const client = new FleetClient({ redisUrl, prefix });
    await use(client);
    await client.close();
  },
  // Takes `client` so that vitest sets the client up first and closes it after the workers.
  startWorker: async ({ redisUrl, prefix, client: _closedAfter }, use) => {
    const started: Agent[] = [];
    await use(async (executor, concurrency) => {
      const worker = await startAgent(redisUrl, prefix, executor, concurrency);
      started.push(worker);
      return worker;
    });
    for (const worker of started) await worker.close();
  },
});

/** Host bd-h1 up with room for every test's VMs, before any worker runs there. */
async function bd1Up(client: FleetClient): Promise<void> {
  await hostUp(client, "bd-h1", { memoryMiB: { total: 65536, capacity: 65536 }, vcpus: { total: 64, capacity: 64 } });
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits until every one of `jobIds` is done. */
function untilDone(client: FleetClient, jobIds: readonly string[]): Promise<void> {
  return waitFor("every job done", async () =>
    (await Promise.all(jobIds.map((id) => client.log.getJob(id)))).every((r) => r?.phase === "done"),
  );
}

/** Waits until the host's bundle has left its queue, then expects nothing waiting, running or failed there. */
async function expectQueueEmpty(client: FleetClient): Promise<void> {
  await waitFor("the bundle gone from the queue", async () => (await client.queueCounts("bd-h1")).active === 0);
  expect(await client.queueCounts("bd-h1")).toMatchObject({ waiting: 0, active: 0, failed: 0 });
}

const ids = (results: unknown[]) =>
  results.map((r) => {
    if (r instanceof Error) throw r;
    return (r as { id: string }).id;
  });

describe("bundles: the creates one call admits for one host, in one BullMQ job", () => {
  test("one BullMQ job carries them; the worker runs each to done, its own events and record, never more at once than its concurrency", async ({
    redisUrl,
    prefix,
    client,
    startWorker,
  }) => {
    const s = scripted();
    await bd1Up(client);
    const names = Array.from({ length: 6 }, (_, i) => `bd-a${i}`);
    const jobIds = ids(await client.createVms(names.map(spec)));
    const entries = await waitingIds(redisUrl, prefix, "bd-h1");
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatch(/^bundle-6-/);
    // Counted as the jobs it carries (the virtfleet_queue_jobs metric reads this).
    expect((await client.queueCounts("bd-h1")).waiting).toBe(6);

    await startWorker(s.executor, 2);
    await untilDone(client, jobIds);
    expect([...s.runs].sort()).toEqual(names);
    expect(s.most()).toBe(2);
    for (const [i, id] of jobIds.entries()) {
      expect((await client.log.read(id)).map((e) => e.phase)).toEqual(["queued", "placed", "disk.creating", "done"]);
      expect(await client.vms.get(names[i] as string)).toMatchObject({ state: "running", jobId: id });
    }
    await expectQueueEmpty(client);
  });

  test("creates of later calls that joined the waiting bundle run like its own: each to done once, the bundle then gone", async ({
    redisUrl,
    prefix,
    client,
    startWorker,
  }) => {
    const s = scripted();
    await bd1Up(client);
    const calls = [
      ["bd-j0", "bd-j1"],
      ["bd-j2", "bd-j3", "bd-j4"],
      ["bd-j5", "bd-j6"],
    ];
    const jobIds: string[] = [];
    for (const names of calls) jobIds.push(...ids(await client.createVms(names.map(spec))));
    const entries = await waitingIds(redisUrl, prefix, "bd-h1");
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatch(/^bundle-2-/);
    expect((await client.queueCounts("bd-h1")).waiting).toBe(7);

    await startWorker(s.executor, 3);
    await untilDone(client, jobIds);
    expect([...s.runs].sort()).toEqual(calls.flat());
    expect(s.most()).toBe(3);
    for (const id of jobIds)
      expect((await client.log.read(id)).map((e) => e.phase)).toEqual(["queued", "placed", "disk.creating", "done"]);
    await expectQueueEmpty(client);
  });

  test("each job is retried on its own with BullMQ's backoff, or fails on its own; the others are done", async ({
    client,
    startWorker,
  }) => {
    const s = scripted();
    await startWorker(s.executor, 4);
    const [ok, flaky, bad] = ids(await client.createVms([spec("bd-ok"), spec("bd-flaky"), spec("bd-bad")]));
    await waitFor("every job ended", async () =>
      (await Promise.all([ok, flaky, bad].map((id) => client.log.getJob(id as string)))).every((r) =>
        ["done", "failed"].includes(r?.phase ?? ""),
      ),
    );
    expect((await client.log.getJob(ok as string))?.phase).toBe("done");
    const retried = await client.log.read(flaky as string);
    expect(retried.map((e) => e.phase)).toEqual([
      "queued",
      "placed",
      "disk.creating",
      "queued",
      "disk.creating",
      "done",
    ]);
    expect(retried[3]?.message).toMatch(/^attempt 1 of 5 failed \(INTERNAL: flaky once\); retrying$/);
    // BullMQ's first backoff: 1 to 2 s after the failed attempt.
    const waited = Date.parse(retried[4]?.at ?? "") - Date.parse(retried[3]?.at ?? "");
    expect(waited).toBeGreaterThanOrEqual(900);
    const failed = await client.log.getJob(bad as string);
    expect(failed).toMatchObject({ phase: "failed", error: { code: "INVALID_SPEC" } });
    expect(await client.vms.get("bd-bad")).toBeUndefined();
    expect(s.runs.filter((r) => r === "bd-bad")).toHaveLength(1); // not retried: a permanent error
    expect(await client.vms.get("bd-flaky")).toMatchObject({ state: "running" });
  });

  test("a bundled job is cancelled on its own, running or still waiting for its turn", async ({
    client,
    startWorker,
  }) => {
    const s = scripted();
    await startWorker(s.executor, 1);
    const [running, waiting, other] = ids(
      await client.createVms([spec("bd-c1-hold"), spec("bd-c2"), spec("bd-c3")]),
    ) as [string, string, string];
    await waitFor("the first job running", () => s.holding.has("bd-c1-hold"));
    // Still waiting in the bundle: ended at once, as a waiting job of its own is.
    expect(await client.cancelJob(waiting)).toBe("cancelled");
    expect((await client.log.getJob(waiting))?.phase).toBe("cancelled");
    expect(await client.cancelJob(running)).toBe("cancelling");
    await waitFor("all three ended", async () =>
      (await Promise.all([running, waiting, other].map((id) => client.log.getJob(id)))).every(
        (r) => r !== undefined && ["done", "cancelled", "failed"].includes(r.phase),
      ),
    );
    expect((await client.log.getJob(running))?.phase).toBe("cancelled");
    expect((await client.log.getJob(waiting))?.phase).toBe("cancelled");
    expect((await client.log.getJob(other))?.phase).toBe("done");
    expect(s.runs).not.toContain("bd-c2"); // never started
    expect(await client.vms.get("bd-c1-hold")).toBeUndefined();
    expect(await client.vms.get("bd-c2")).toBeUndefined();
  });

  test("a create ended while it runs (its host judged lost, say) stops at its next event and rolls back", async ({
    client,
    startWorker,
  }) => {
    const s = scripted();
    await startWorker(s.executor, 2);
    const [gated, other] = ids(await client.createVms([spec("bd-e1-gate"), spec("bd-e2")])) as [string, string];
    await waitFor("the gated job at its first event", () => s.holding.has("bd-e1-gate"));
    // What the host monitor does to a lost host's running job.
    await client.log.append({
      jobId: gated,
      kind: "create",
      vm: "bd-e1-gate",
      phase: "failed",
      message: "host bd-h1 stopped answering",
      error: { code: "HOST_LOST", message: "host bd-h1 stopped answering" },
    });
    s.letGo();
    await waitFor("the gated job rolled back", () => s.rolledBack.includes("bd-e1-gate"));
    const events = (await client.log.read(gated)).map((e) => e.phase);
    expect(events).toEqual(["queued", "placed", "disk.creating", "failed"]); // nothing after its end
    expect(s.reached).toEqual([]); // it stopped at its first refused event
    expect((await client.log.getJob(gated))?.error?.code).toBe("HOST_LOST");
    await waitFor("the other job done", async () => (await client.log.getJob(other))?.phase === "done");
  });

  test("a worker shutting down hands the bundle back; the next run skips the jobs that ended and finishes the rest", async ({
    redisUrl,
    prefix,
    client,
    startWorker,
  }) => {
    const first = scripted();
    const worker = await startWorker(first.executor, 2);
    const [done, held, later] = ids(await client.createVms([spec("bd-s1"), spec("bd-s2-hold"), spec("bd-s3")])) as [
      string,
      string,
      string,
    ];
    await waitFor("the first job done and the second running", async () => {
      return first.holding.has("bd-s2-hold") && (await client.log.getJob(done))?.phase === "done";
    });
    await worker.close(); // its deadline (300 ms) passes: the held job is aborted and handed back
    expect((await client.log.getJob(held))?.phase).toBe("queued");
    expect((await client.log.read(held)).at(-1)?.message).toBe("handed back: the worker is shutting down");
    expect((await waitingIds(redisUrl, prefix, "bd-h1"))[0]).toMatch(/^bundle-3-/);

    const second = scripted();
    // The same VMs, nothing held this time.
    const executor: JobExecutor = {
      ...second.executor,
      create: (data, report, signal) =>
        second.executor.create(
          { ...data, spec: { ...data.spec, name: data.spec.name.replace("-hold", "") } },
          report,
          signal,
        ),
    };
    await startWorker(executor, 2);
    await untilDone(client, [done, held, later]);
    expect(second.runs).not.toContain("bd-s1"); // it had ended: skipped
    expect(second.runs).toContain("bd-s2");
    expect((await client.log.read(done)).filter((e) => e.phase === "done")).toHaveLength(1);
  });
});
