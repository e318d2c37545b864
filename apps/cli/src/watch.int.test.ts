import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { FleetClient } from "@virtfleet/fleet";
import { describe, expect } from "vitest";
import { hostUp } from "../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

const CLI = path.resolve(import.meta.dirname, "../dist/main.js");

/** The built CLI, run against the test's Redis and prefix; collects its stdout lines. */
function cli(redisUrl: string, prefix: string, ...args: string[]) {
  const { VIRTFLEET_API_URL: _api, VIRTFLEET_TOKEN: _token, ...env } = process.env;
  const child: ChildProcess = spawn(process.execPath, [CLI, ...args], {
    env: { ...env, REDIS_URL: redisUrl, VIRTFLEET_PREFIX: prefix },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    lines.push(...parts);
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  // "close": the process has exited and its output has all been read.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return { child, lines, exited, stderr: () => stderr };
}

const events = (lines: string[]) =>
  lines.map((l) => JSON.parse(l) as { jobId: string; phase: string }).map((e) => `${e.jobId}:${e.phase}`);

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const spec = (name: string) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });

// Each test spawns the CLI a dozen times (~1 s each on a quiet 2-core machine, several under load).
describe("virtfleet watch against real Redis", { timeout: 90_000 }, () => {
  test("with no id it prints every job's events as they come, in order, until interrupted (exit 0)", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      for (const jobId of ["probe", "j1", "j2"])
        await client.log.createJob({ jobId, kind: "create", vm: `vm-${jobId}` });
      const w = cli(redisUrl, prefix, "watch", "--json");
      // Events written before it started reading are not shown: probe until it shows one.
      await until("the watcher to follow", async () => {
        await client.log.append({ jobId: "probe", kind: "create", vm: "vm-probe", phase: "placed", message: "p" });
        return w.lines.length > 0;
      });
      const seen = w.lines.length;
      await Promise.all([
        client.log.append({ jobId: "j1", kind: "create", vm: "vm-j1", phase: "queued", message: "q" }),
        client.log.append({ jobId: "j2", kind: "create", vm: "vm-j2", phase: "queued", message: "q" }),
      ]);
      await client.log.append({ jobId: "j1", kind: "create", vm: "vm-j1", phase: "done", message: "d" });
      await until("three more events", () => events(w.lines).filter((e) => !e.startsWith("probe")).length >= 3);
      expect(events(w.lines.slice(seen)).filter((e) => !e.startsWith("probe"))).toEqual([
        "j1:queued",
        "j2:queued",
        "j1:done",
      ]);
      w.child.kill("SIGINT");
      expect(await w.exited).toBe(0);
    } finally {
      await client.close();
    }
  });

  test("a batch id follows the batch's jobs until all have ended: 0 when all are done, 1 when one failed", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1", { vcpus: { total: 8, capacity: 8 } }); // room for a few VMs
      for (const outcome of ["done", "failed"] as const) {
        const { batchId, items } = await client.createBatch([spec(`${outcome}-a`), spec(`${outcome}-b`)]);
        const jobs = items.map((i) => i.jobId as string);
        const w = cli(redisUrl, prefix, "watch", batchId, "--json");
        await until("the queued and placed events", () => w.lines.length >= 4);
        // As the worker would end them: the first done, the second done or failed.
        await client.log.append({
          jobId: jobs[0] as string,
          kind: "create",
          vm: `${outcome}-a`,
          phase: "done",
          message: "d",
        });
        await client.log.append({
          jobId: jobs[1] as string,
          kind: "create",
          vm: `${outcome}-b`,
          phase: outcome,
          message: outcome,
          ...(outcome === "failed" ? { error: { code: "COMMAND_FAILED" as const, message: "boom" } } : {}),
        });
        expect(await w.exited).toBe(outcome === "done" ? 0 : 1);
        const seen = events(w.lines);
        for (const j of jobs)
          expect(seen.filter((e) => e.startsWith(`${j}:`)).map((e) => e.split(":")[1])).toHaveLength(3);
        expect(seen.at(-1)).toBe(`${jobs[1]}:${outcome}`);
      }
    } finally {
      await client.close();
    }
  });

  test("an unknown job or batch is a clear error (exit 1), a batch id with other ids is bad input (exit 2)", async ({
    redisUrl,
    prefix,
  }) => {
    const job = cli(redisUrl, prefix, "watch", "no-such-job", "--json");
    expect(await job.exited).toBe(1);
    expect(JSON.parse(job.lines[0] as string)).toMatchObject({ error: { code: "JOB_NOT_FOUND" } });
    const batch = cli(redisUrl, prefix, "watch", "batch-nope", "--json");
    expect(await batch.exited).toBe(1);
    expect(JSON.parse(batch.lines[0] as string)).toMatchObject({ error: { code: "NOT_FOUND" } });
    const mixed = cli(redisUrl, prefix, "watch", "batch-nope", "job-1");
    expect(await mixed.exited).toBe(2);
    expect(mixed.stderr()).toContain("a batch id is watched alone");
  });
});
