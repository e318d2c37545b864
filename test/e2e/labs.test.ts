import { randomUUID } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LAB_LABEL, type LabView, type StreamedLabEvent } from "@virtfleet/core";
import { FleetClient } from "@virtfleet/fleet";
import { LabKeys, LabService, LabWatcher, LeaseStore, TemplateStore } from "@virtfleet/labs";
import { VirtfleetApi } from "@virtfleet/sdk";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  runCli,
  startWorker,
  tinySpec,
  until,
  virsh,
  type WorkerProcess,
} from "./harness.js";

// Labs with a real worker and real VMs (the `tiny` guest under TCG, no network): a lab of 3 VMs
// comes up as one; one VM that fails rolls the whole lab back; `lab down` leaves nothing; the CLI's
// `lab up --wait` / `lab show` / `lab down --wait`. The elected controller's LabWatcher is run here
// by the test itself.

const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
const env = cliEnv(fleet);
let worker: WorkerProcess;
let redis: Redis;
let client: FleetClient;
let labs: LabService;
let keys: LabKeys;
let watching: NodeJS.Timeout | undefined;

/** This suite's lab names: `lb…`, so its VMs (`<lab>-<name>-<n>`) are told apart from other suites'. */
function labName(tag: string): string {
  return `lb${tag}-${randomUUID().slice(0, 6)}`;
}

/** This suite's domains still defined. */
async function ours(): Promise<string[]> {
  return (await virsh(["list", "--all", "--name"])).stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("lb"));
}

const { name: _n, ...tiny } = tinySpec("x");

beforeAll(async () => {
  worker = await startWorker(fleet);
  redis = new Redis(fleet.redisUrl);
  client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
  keys = new LabKeys(fleet.prefix);
  const templates = new TemplateStore(redis, keys);
  labs = new LabService({
    redis,
    keys,
    fleet: client,
    templates,
    leases: new LeaseStore(redis, keys),
    logger: pino({ level: "silent" }),
  });
  await templates.put("lbt-tiny", { ...tiny, guestReady: { strategy: "console" } });
  // The tiny guest has no guest agent: waiting for one fails GUEST_TIMEOUT.
  await templates.put("lbt-noagent", { ...tiny, guestReady: { strategy: "agent", timeoutSec: 8 } });
  // The controller's loop, as the worker runs it.
  const watcher = new LabWatcher(labs);
  let busy = false;
  watching = setInterval(() => {
    if (busy) return;
    busy = true;
    void watcher.tick().finally(() => {
      busy = false;
    });
  }, 300);
});

afterAll(async () => {
  clearInterval(watching);
  await worker?.stop();
  if (worker !== undefined) await rm(worker.storageDir, { recursive: true, force: true });
  await client?.close();
  redis?.disconnect();
});

// A test that leaves a domain or a file behind fails.
afterEach(async () => {
  const left = await ours();
  const files = await filesIn(worker.storageDir);
  for (const d of left) {
    await virsh(["destroy", d]);
    await virsh(["undefine", d, "--nvram"]);
  }
  expect({ domains: left, files }).toEqual({ domains: [], files: [] });
});

async function labUntil(name: string, what: string, check: (v: LabView) => boolean, timeoutMs = 120_000) {
  return until(
    what,
    async () => {
      const v = await labs.get(name);
      return v !== undefined && check(v) ? v : undefined;
    },
    timeoutMs,
  );
}

async function collect(name: string): Promise<StreamedLabEvent[]> {
  const out: StreamedLabEvent[] = [];
  for await (const e of labs.events(name, { blockMs: 500 })) out.push(e);
  return out;
}

describe("labs with a real worker and real VMs", () => {
  it("a lab of 3 VMs comes up as one, and lab down leaves nothing", async () => {
    const name = labName("up");
    const started = await labs.up({
      name,
      lab: {
        vms: [
          { name: "web", template: "lbt-tiny", count: 2 },
          { name: "db", template: "lbt-tiny" },
        ],
        labels: { course: "net101" },
        antiAffinity: true,
      },
      ttl: "1h",
    });
    expect(started.state).toBe("creating");
    expect(started.vms.map((v) => v.name)).toEqual([`${name}-db-1`, `${name}-web-1`, `${name}-web-2`]);
    expect(started.batchId).toMatch(/^batch-/);

    const ready = await labUntil(name, "the lab ready", (v) => v.state !== "creating", 150_000);
    expect(ready.state, JSON.stringify(ready) + worker.logs().slice(-3000)).toBe("ready");
    expect(ready.reason).toBeUndefined();
    for (const vm of ready.vms) {
      expect(vm.phase).toBe("done");
      expect(vm.host).toBe(worker.hostId);
      expect(vm.addresses).toEqual([]); // no network: nothing to report, but the field is there
      expect(await domainState(vm.name)).toBe("running");
      const record = await client.vms.get(vm.name);
      expect(record?.labels).toMatchObject({ course: "net101", [LAB_LABEL]: name });
      expect(record?.group).toBe(`lab.${name}`);
    }
    const lease = await labs.get(name);
    expect(Date.parse(lease?.expiresAt ?? "") - Date.now()).toBeGreaterThan(50 * 60_000);

    const down = await labs.down(name);
    expect(["expiring", "gone"]).toContain(down.state);
    const gone = await labUntil(name, "the lab gone", (v) => v.state === "gone", 120_000);
    expect(gone.vms.every((v) => v.phase === "destroyed")).toBe(true);
    for (const vm of gone.vms) {
      expect(await domainState(vm.name)).toBeUndefined();
      expect(await client.vms.get(vm.name)).toBeUndefined();
    }
    expect(await redis.zscore(keys.leases(), gone.leaseId)).toBeNull();
    // Down again: nothing more to do.
    expect((await labs.down(name)).state).toBe("gone");

    const events = await collect(name);
    const states = events.filter((e) => e.type === "state").map((e) => e.state);
    expect(states).toEqual(["creating", "ready", "expiring", "gone"]);
    const vmEnds = events.flatMap((e) => (e.type === "vm" ? [`${e.vm}:${e.phase}`] : []));
    for (const vm of gone.vms) {
      expect(vmEnds).toContain(`${vm.name}:done`);
      expect(vmEnds).toContain(`${vm.name}:destroyed`);
    }
  });

  it("one VM that fails rolls the whole lab back, with the reason (lab up --wait exits 1 saying why)", async () => {
    const name = labName("fail");
    const file = path.join(tmpdir(), `${name}.json`);
    await writeFile(
      file,
      JSON.stringify({
        vms: [
          { name: "ok", template: "lbt-tiny", count: 2 },
          { name: "bad", template: "lbt-noagent" },
        ],
      }),
    );
    const up = await runCli(["lab", "up", "-f", file, "--name", name, "--wait"], env);
    await rm(file, { force: true });
    expect(up.code, up.stdout + up.stderr).toBe(1);
    expect(up.stderr).toMatch(new RegExp(`lab ${name} failed: ${name}-bad-1: GUEST_TIMEOUT: `));
    const failed = await labUntil(name, "the lab failed", (v) => v.state !== "creating", 150_000);
    expect(failed.state).toBe("failed");
    expect(failed.reason).toMatch(new RegExp(`^${name}-bad-1: GUEST_TIMEOUT: `));
    const rolled = await labUntil(name, "the lab rolled back", (v) => v.rolledBack === true, 120_000);
    expect(rolled.state).toBe("failed");
    expect(rolled.vms.find((v) => v.name === `${name}-bad-1`)?.error?.code).toBe("GUEST_TIMEOUT");
    for (const vm of rolled.vms) {
      expect(await domainState(vm.name)).toBeUndefined();
      expect(await client.vms.get(vm.name)).toBeUndefined();
    }
    // The view reads rolled back as soon as the VMs are gone; the watcher ends the lease on its tick.
    await until("the lease ended", async () => (await redis.zscore(keys.leases(), rolled.leaseId)) === null);
    const events = await collect(name);
    expect(events.at(-1)).toMatchObject({ type: "state", state: "failed", rolledBack: true });
    // Its name is free again once it is rolled back.
    await expect(labs.up({ name, lab: { vms: [{ name: "x", template: "lbt-missing" }] } })).rejects.toMatchObject({
      code: "NOT_FOUND",
      field: "lab.vms.0.template",
    });
  });

  it("the CLI: lab up --wait, lab show, lab ls, lab extend, lab down --wait", async () => {
    const name = labName("cli");
    const file = path.join(tmpdir(), `${name}.yaml`);
    await writeFile(file, "vms:\n  - name: node\n    template: lbt-tiny\n    count: 2\nlabels:\n  team: blue\n");
    try {
      const up = await runCli(["lab", "up", "-f", file, "--name", name, "--ttl", "30m", "--wait"], env);
      expect(up.code, up.stdout + up.stderr + worker.logs().slice(-3000)).toBe(0);
      expect(up.stdout).toContain(`${name}-node-1`);
      expect(up.stdout).toMatch(/ready/);

      const show = await runCli(["lab", "show", name, "--json"], env);
      expect(show.code, show.stderr).toBe(0);
      const view = JSON.parse(show.stdout) as LabView;
      expect(view.state).toBe("ready");
      expect(view.labels).toEqual({ team: "blue" });
      expect(view.vms.map((v) => [v.name, v.host, v.phase])).toEqual([
        [`${name}-node-1`, worker.hostId, "done"],
        [`${name}-node-2`, worker.hostId, "done"],
      ]);
      const table = await runCli(["lab", "show", name], env);
      expect(table.stdout).toContain(worker.hostId);

      const ls = await runCli(["lab", "ls", "--json"], env);
      expect((JSON.parse(ls.stdout) as LabView[]).map((l) => [l.name, l.state])).toContainEqual([name, "ready"]);

      const extended = await runCli(["lab", "extend", name, "2h", "--json"], env);
      expect(extended.code, extended.stderr).toBe(0);
      expect(Date.parse((JSON.parse(extended.stdout) as LabView).expiresAt) - Date.now()).toBeGreaterThan(100 * 60_000);

      const down = await runCli(["lab", "down", name, "--wait"], env);
      expect(down.code, down.stdout + down.stderr).toBe(0);
      expect(down.stdout).toMatch(/gone/);
      expect(await ours()).toEqual([]);
      expect(await client.vms.get(`${name}-node-1`)).toBeUndefined();
    } finally {
      await runCli(["lab", "down", name], env);
      await rm(file, { force: true });
    }
  });

  it("the CLI through the API, and the SDK's lab event stream", async () => {
    const token = "lb-token-0123456789abcdef";
    const api = new ApiServer({
      redisUrl: fleet.redisUrl,
      prefix: fleet.prefix,
      tokens: new TokenStore([{ id: "lb", token, scopes: ["vms:read", "vms:write"], tenant: "lbtenant" }]),
      logger: pino({ level: "silent" }),
      port: 0,
    });
    await api.start();
    const name = labName("api");
    const file = path.join(tmpdir(), `${name}.yaml`);
    await writeFile(file, "vms:\n  - name: node\n    template: lbt-tiny\n");
    const apiEnv = { VIRTFLEET_API_URL: api.url, VIRTFLEET_TOKEN: token };
    try {
      const up = await runCli(["lab", "up", "-f", file, "--name", name, "--wait", "--json"], apiEnv);
      expect(up.code, up.stdout + up.stderr).toBe(0);
      const view = JSON.parse(up.stdout) as LabView;
      expect(view).toMatchObject({ name, state: "ready", tenant: "lbtenant" });
      expect(view.vms[0]).toMatchObject({ name: `${name}-node-1`, host: worker.hostId, phase: "done" });
      expect((await client.vms.get(`${name}-node-1`))?.tenant).toBe("lbtenant");

      const missing = await runCli(["lab", "show", "lbnosuch"], apiEnv);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain("NOT_FOUND");

      const down = await runCli(["lab", "down", name, "--wait"], apiEnv);
      expect(down.code, down.stdout + down.stderr).toBe(0);
      expect(await ours()).toEqual([]);

      const sdk = new VirtfleetApi({ baseUrl: api.url, token });
      const events: StreamedLabEvent[] = [];
      for await (const e of sdk.labEvents(name)) events.push(e);
      expect(events.filter((e) => e.type === "state").map((e) => e.state)).toEqual([
        "creating",
        "ready",
        "expiring",
        "gone",
      ]);
      expect(events.filter((e) => e.type === "vm").map((e) => e.type === "vm" && e.phase)).toEqual([
        "done",
        "destroyed",
      ]);
    } finally {
      await runCli(["lab", "down", name], apiEnv);
      await rm(file, { force: true });
      await api.close();
    }
  });
});
