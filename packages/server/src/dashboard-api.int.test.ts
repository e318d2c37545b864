import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { parse as parseOpenApi } from "@readme/openapi-parser";
import type { ApiToken } from "@virtfleet/core";
import { EventLog, FleetClient, Keys, replyConsole, VmRegistry } from "@virtfleet/fleet";
import { VirtfleetApi } from "@virtfleet/sdk";
import { Redis } from "ioredis";
import { describe, expect, vi } from "vitest";
import { call } from "../../../test/fixtures/api-server.js";
import { tinySpec } from "../../../test/fixtures/api-streams.js";
import { apiTest } from "../../../test/fixtures/api-test.js";
import { hostStatus, hostUp } from "../../../test/fixtures/host-status.js";
import { buildOpenApi } from "./openapi.js";

const CLI = path.resolve(import.meta.dirname, "../../../apps/cli/dist/main.js");
const run = promisify(execFile);

const ADMIN = "hb-admin-token-0123456789abcdef";
const ACME = "hb-acme-token-0123456789abcdef";
const ACME_W = "hb-acmew-token-0123456789abcdef";
const OTHER = "hb-other-token-0123456789abcdef";
const TOKENS: ApiToken[] = [
  { id: "admin", token: ADMIN, scopes: ["admin"], tenant: "ops" },
  { id: "acme", token: ACME, scopes: ["vms:read", "hosts:read"], tenant: "acme" },
  { id: "acme-w", token: ACME_W, scopes: ["vms:read", "vms:write", "hosts:read"], tenant: "acme" },
  { id: "other", token: OTHER, scopes: ["vms:read"], tenant: "other" },
];

/**
 * One API server per test knowing TOKENS (it asks a host's worker for console lines for 300 ms at most:
 * the console tests wait on it), with the test prefix's keys and event log.
 */
const test = apiTest(TOKENS, { consoleTimeoutMs: 300 }).extend<{ keys: Keys; log: EventLog }>({
  keys: async ({ prefix }, use) => {
    await use(new Keys(prefix));
  },
  log: async ({ redis, keys }, use) => {
    await use(new EventLog(redis, keys));
  },
});

/** A VM record of acme's on h1, as a worker would have written it. */
function vmRecord(name: string, state: "running" | "creating") {
  return {
    name,
    state,
    hostId: "h1",
    fingerprint: "",
    jobId: "j",
    memoryMiB: 64,
    vcpus: 1,
    labels: {},
    tenant: "acme",
    updatedAt: new Date().toISOString(),
  };
}

/** A Server-Sent Events reader: `next(n)` waits for n more events (id and parsed data). */
async function sse(url: string, token: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const res = await fetch(url, {
    headers: { authorization: `Bearer ${token}`, ...headers },
    signal: controller.signal,
  });
  const events: { id: string; data: Record<string, unknown> }[] = [];
  let buffer = "";
  const pump = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (id !== undefined && data !== undefined) events.push({ id, data: JSON.parse(data) });
          end = buffer.indexOf("\n\n");
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    status: res.status,
    contentType: res.headers.get("content-type"),
    events,
    async waitFor(n: number) {
      await vi.waitFor(() => expect(events.length).toBeGreaterThanOrEqual(n), { timeout: 5000, interval: 20 });
      return events;
    },
    async close() {
      controller.abort();
      await pump;
    },
  };
}

/** A job with a record of the tenant's and its events up to `failed` (with the failing command). */
async function failJob(log: EventLog, jobId: string, vm: string, tenant: string, stderr: string) {
  await log.createJob({ jobId, kind: "create", vm, hostId: "h1", tenant });
  await log.append({ jobId, kind: "create", vm, phase: "queued", message: "queued", host: "h1" });
  await log.append({
    jobId,
    kind: "create",
    vm,
    phase: "failed",
    message: "virt-install failed",
    host: "h1",
    error: {
      code: "COMMAND_FAILED",
      message: "virt-install failed",
      command: ["virt-install", "--name", vm],
      exitCode: 1,
      stderr,
    },
  });
}

describe("dashboard API against a real API server and Redis", () => {
  test("POST /v1/hosts/{id}/drain and /undrain: admin only, the host's view, 404 for an unknown host", async ({
    redisUrl,
    prefix,
    api,
  }) => {
    expect((await fetch(`${api.base}/v1/hosts/h1/drain`, { method: "POST" })).status).toBe(401);
    const forbidden = await call(api.base, "POST", "/v1/hosts/h1/drain", ACME_W);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toMatchObject({ code: "FORBIDDEN" });

    const drained = await call(api.base, "POST", "/v1/hosts/h1/drain", ADMIN);
    expect(drained.status).toBe(200);
    expect(drained.body).toMatchObject({ hostId: "h1", up: true, draining: true, capacity: { memoryMiB: 65_536 } });
    // The same shape and state as GET /v1/hosts, and placement sees it (as after `virtfleet hosts drain`).
    const listed = await call(api.base, "GET", "/v1/hosts", ACME);
    expect((listed.body as unknown as unknown[])[0]).toEqual(drained.body);
    const client = new FleetClient({ redisUrl, prefix });
    try {
      expect((await client.hosts.get("h1"))?.draining).toBe(true);
      const undrained = await call(api.base, "POST", "/v1/hosts/h1/undrain", ADMIN);
      expect(undrained.status).toBe(200);
      expect(undrained.body).toMatchObject({ hostId: "h1", draining: false });
      expect((await client.hosts.get("h1"))?.draining).toBe(false);
    } finally {
      await client.close();
    }

    const unknown = await call(api.base, "POST", "/v1/hosts/nope/drain", ADMIN);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: "NOT_FOUND", field: "id" });
    const bad = await call(api.base, "POST", "/v1/hosts/Bad!Host/undrain", ADMIN);
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: "INVALID_SPEC", field: "id" });
  });

  test("GET /v1/jobs?state=failed: newest first with code, command and stderr; tenant-scoped; limit; bad query names the field", async ({
    api,
    log,
  }) => {
    await failJob(log, "hb-job-1", "hb-a1", "acme", "error: one");
    await failJob(log, "hb-job-2", "hb-o1", "other", "error: two");
    await failJob(log, "hb-job-3", "hb-a2", "acme", "error: three");
    // A job that ends well is not listed.
    await log.createJob({ jobId: "hb-job-4", kind: "create", vm: "hb-a3", tenant: "acme" });
    await log.append({ jobId: "hb-job-4", kind: "create", vm: "hb-a3", phase: "done", message: "done" });

    const acme = await call(api.base, "GET", "/v1/jobs?state=failed", ACME);
    expect(acme.status).toBe(200);
    const jobs = acme.body.jobs as Record<string, unknown>[];
    expect(jobs.map((j) => j.jobId)).toEqual(["hb-job-3", "hb-job-1"]);
    expect(jobs[0]).toMatchObject({
      jobId: "hb-job-3",
      vm: "hb-a2",
      kind: "create",
      code: "COMMAND_FAILED",
      message: "virt-install failed",
      command: ["virt-install", "--name", "hb-a2"],
      exitCode: 1,
      stderr: "error: three",
      host: "h1",
    });
    expect(Number.isNaN(Date.parse(String(jobs[0]?.at)))).toBe(false);

    const admin = await call(api.base, "GET", "/v1/jobs?state=failed&limit=2", ADMIN);
    expect((admin.body.jobs as { jobId: string }[]).map((j) => j.jobId)).toEqual(["hb-job-3", "hb-job-2"]);
    const other = await call(api.base, "GET", "/v1/jobs?state=failed", OTHER);
    expect((other.body.jobs as { jobId: string }[]).map((j) => j.jobId)).toEqual(["hb-job-2"]);

    const noState = await call(api.base, "GET", "/v1/jobs", ACME);
    expect(noState.status).toBe(400);
    expect(noState.body).toMatchObject({ code: "INVALID_SPEC", field: "query.state" });
    const tooMany = await call(api.base, "GET", "/v1/jobs?state=failed&limit=501", ACME);
    expect(tooMany.body).toMatchObject({ code: "INVALID_SPEC", field: "query.limit" });
    expect((await fetch(`${api.base}/v1/jobs?state=failed`)).status).toBe(401);
  });

  test("GET /v1/jobs?vm=NAME: every job of the VM, newest first, with its latest phase and code; tenant-scoped; limit; the SDK's vmJobs", async ({
    api,
    log,
  }) => {
    const job = async (
      jobId: string,
      kind: "create" | "destroy",
      vm: string,
      tenant: string,
      phase: "done" | "running",
    ) => {
      await log.createJob({ jobId, kind, vm, hostId: "h1", tenant });
      await log.append({ jobId, kind, vm, phase: "queued", message: "queued", host: "h1" });
      if (phase === "done") await log.append({ jobId, kind, vm, phase: "done", message: "done", host: "h1" });
    };
    await failJob(log, "hu2-j1", "hu2-v1", "acme", "error: first try");
    await job("hu2-j2", "create", "hu2-v1", "acme", "done");
    await job("hu2-j3", "create", "hu2-v2", "acme", "done");
    await job("hu2-j4", "destroy", "hu2-v1", "acme", "running");
    await job("hu2-j5", "create", "hu2-vo", "other", "done");

    const acme = await call(api.base, "GET", "/v1/jobs?vm=hu2-v1", ACME);
    expect(acme.status).toBe(200);
    const jobs = acme.body.jobs as Record<string, unknown>[];
    expect(jobs.map((j) => [j.jobId, j.kind, j.phase])).toEqual([
      ["hu2-j4", "destroy", "queued"],
      ["hu2-j2", "create", "done"],
      ["hu2-j1", "create", "failed"],
    ]);
    expect(jobs[2]).toMatchObject({ code: "COMMAND_FAILED", stderr: "error: first try", host: "h1" });
    expect(jobs[1]?.code).toBeUndefined();
    expect(Number.isNaN(Date.parse(String(jobs[0]?.at)))).toBe(false);

    const limited = await call(api.base, "GET", "/v1/jobs?vm=hu2-v1&limit=1", ACME);
    expect((limited.body.jobs as { jobId: string }[]).map((j) => j.jobId)).toEqual(["hu2-j4"]);
    // Another tenant's VM's jobs are not shown; an admin sees them.
    expect((await call(api.base, "GET", "/v1/jobs?vm=hu2-vo", ACME)).body).toEqual({ jobs: [] });
    const admin = await call(api.base, "GET", "/v1/jobs?vm=hu2-vo", ADMIN);
    expect((admin.body.jobs as { jobId: string }[]).map((j) => j.jobId)).toEqual(["hu2-j5"]);

    const both = await call(api.base, "GET", "/v1/jobs?vm=hu2-v1&state=failed", ACME);
    expect(both.status).toBe(400);
    expect(both.body).toMatchObject({ code: "INVALID_SPEC", field: "query.vm" });
    const badName = await call(api.base, "GET", "/v1/jobs?vm=Not%20a%20name", ACME);
    expect(badName.body).toMatchObject({ code: "INVALID_SPEC", field: "query.vm" });

    const sdk = new VirtfleetApi({ baseUrl: api.base, token: ACME });
    expect((await sdk.vmJobs("hu2-v1", { limit: 2 })).map((j) => j.jobId)).toEqual(["hu2-j4", "hu2-j2"]);
  });

  test("a created VM has createdAt (its admission), returned by GET /v1/vms and GET /v1/vms/{name}", async ({
    api,
  }) => {
    await hostUp(api.server.fleet, "h1");
    const before = Date.now();
    const created = await call(api.base, "POST", "/v1/vms", ACME_W, { spec: tinySpec("hu2-age") });
    expect(created.status).toBe(202);
    const list = await call(api.base, "GET", "/v1/vms", ACME);
    const vm = (list.body as unknown as { name: string; createdAt?: string }[]).find((v) => v.name === "hu2-age");
    const at = Date.parse(String(vm?.createdAt));
    expect(at).toBeGreaterThanOrEqual(before - 1000);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect((await call(api.base, "GET", "/v1/vms/hu2-age", ACME)).body.createdAt).toBe(vm?.createdAt);
  });

  test("GET /v1/events: every visible job event from now on, as on /v1/jobs/{id}/events; Last-Event-ID resumes", async ({
    api,
    log,
  }) => {
    const streams: Awaited<ReturnType<typeof sse>>[] = [];
    try {
      // Before the stream opens: not sent.
      await log.createJob({ jobId: "hb-old", kind: "create", vm: "hb-old", tenant: "acme" });
      await log.append({ jobId: "hb-old", kind: "create", vm: "hb-old", phase: "queued", message: "old" });

      const acme = await sse(`${api.base}/v1/events`, ACME);
      const admin = await sse(`${api.base}/v1/events`, ADMIN);
      streams.push(acme, admin);
      expect(acme.status).toBe(200);
      expect(acme.contentType).toMatch(/^text\/event-stream/);
      // A stream's head is sent once its starting point is fixed: what follows is seen.

      await log.createJob({ jobId: "hb-e-a", kind: "create", vm: "hb-ea", tenant: "acme" });
      await log.createJob({ jobId: "hb-e-o", kind: "create", vm: "hb-eo", tenant: "other" });
      await log.append({ jobId: "hb-e-o", kind: "create", vm: "hb-eo", phase: "queued", message: "other's" });
      await log.append({ jobId: "hb-e-a", kind: "create", vm: "hb-ea", phase: "queued", message: "first" });
      await log.append({ jobId: "hb-e-a", kind: "create", vm: "hb-ea", phase: "done", message: "second" });

      const seen = await admin.waitFor(3);
      expect(seen.map((e) => e.data.jobId)).toEqual(["hb-e-o", "hb-e-a", "hb-e-a"]);
      const mine = await acme.waitFor(2);
      expect(mine.map((e) => e.data.message)).toEqual(["first", "second"]);
      // The same JSON as the job's own stream sends.
      const jobStream = await sse(`${api.base}/v1/jobs/hb-e-a/events`, ACME);
      streams.push(jobStream);
      await jobStream.waitFor(2);
      expect(mine.map((e) => e.data)).toEqual(jobStream.events.map((e) => e.data));
      await new Promise((r) => setTimeout(r, 200));
      expect(acme.events).toHaveLength(2);

      // Resume after the first of acme's events: only the second comes again.
      const resumed = await sse(`${api.base}/v1/events`, ACME, { "last-event-id": mine[0]?.id as string });
      streams.push(resumed);
      const again = await resumed.waitFor(1);
      expect(again.map((e) => e.data.message)).toEqual(["second"]);
      expect(again[0]?.id).toBe(mine[1]?.id);

      const bad = await call(api.base, "GET", "/v1/events?lastEventId=nope", ACME);
      expect(bad.body).toMatchObject({ code: "INVALID_SPEC", field: "Last-Event-ID" });
      expect((await fetch(`${api.base}/v1/events`)).status).toBe(401);
    } finally {
      for (const s of streams) await s.close();
    }
  });

  test("GET /v1/vms/{name}/console: asks the VM's host; 404, 409, 504 HOST_TIMEOUT; lines checked", async ({
    redis,
    redisUrl,
    api,
    keys,
  }) => {
    const worker = new Redis(redisUrl);
    try {
      const vms = new VmRegistry(redis, keys);
      await vms.put(vmRecord("hb-run", "running"));
      await vms.put(vmRecord("hb-new", "creating"));

      // No worker of h1 listens: HOST_TIMEOUT (504).
      const timeout = await call(api.base, "GET", "/v1/vms/hb-run/console", ACME);
      expect(timeout.status).toBe(504);
      expect(timeout.body).toMatchObject({ code: "HOST_TIMEOUT" });

      // A stand-in for h1's worker: answers the lines asked for.
      const asked: unknown[] = [];
      await worker.subscribe(keys.consoleChannel("h1"));
      worker.on("message", (_channel: string, message: string) => {
        const request = JSON.parse(message) as { id: string; vm: string; lines: number };
        asked.push(request);
        const lines = Array.from({ length: request.lines }, (_, i) => `line ${i + 1}`);
        void replyConsole(redis, keys, request.id, { lines, updatedAt: "2026-11-30T12:00:00.000Z" });
      });
      const tail = await call(api.base, "GET", "/v1/vms/hb-run/console?lines=3", ACME);
      expect(tail.status).toBe(200);
      expect(tail.body).toEqual({
        vm: "hb-run",
        host: "h1",
        lines: ["line 1", "line 2", "line 3"],
        updatedAt: "2026-11-30T12:00:00.000Z",
      });
      const byDefault = await call(api.base, "GET", "/v1/vms/hb-run/console", ACME);
      expect(byDefault.body.lines).toHaveLength(50);
      expect(asked).toMatchObject([
        { vm: "hb-run", lines: 3 },
        { vm: "hb-run", lines: 50 },
      ]);

      expect((await call(api.base, "GET", "/v1/vms/hb-run/console", OTHER)).body).toMatchObject({
        code: "VM_NOT_FOUND",
        field: "name",
      });
      expect((await call(api.base, "GET", "/v1/vms/hb-gone/console", ACME)).status).toBe(404);
      const creating = await call(api.base, "GET", "/v1/vms/hb-new/console", ACME);
      expect(creating.status).toBe(409);
      expect(creating.body).toMatchObject({ code: "VM_NOT_RUNNING" });
      for (const lines of ["0", "501", "x"]) {
        const bad = await call(api.base, "GET", `/v1/vms/hb-run/console?lines=${lines}`, ACME);
        expect(bad.status).toBe(400);
        expect(bad.body).toMatchObject({ code: "INVALID_SPEC", field: "query.lines" });
      }
      expect(asked).toHaveLength(2);
    } finally {
      worker.disconnect();
    }
  });

  test("bull-board at /ui/queues: admin only, the hosts' queues (a host joining later too), assets served locally", async ({
    redisUrl,
    prefix,
    api,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      expect((await fetch(`${api.base}/ui/queues`)).status).toBe(401);
      const forbidden = await fetch(`${api.base}/ui/queues`, { headers: { authorization: `Bearer ${ACME_W}` } });
      expect(forbidden.status).toBe(403);
      expect(await forbidden.json()).toMatchObject({ code: "FORBIDDEN" });
      const get = (path: string) => fetch(`${api.base}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });

      const page = await get("/ui/queues");
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toMatch(/^text\/html/);
      expect(page.headers.get("content-security-policy")).toContain("default-src 'self'");
      const html = await page.text();
      expect(html).toContain('<base href="/ui/queues/"');
      expect(html).not.toMatch(/https?:\/\//);
      // Every script and stylesheet of the page is served by the API itself.
      const assets = [...html.matchAll(/(?:src|href)="(static\/[^"]+)"/g)].map((m) => m[1] as string);
      expect(assets.length).toBeGreaterThan(1);
      for (const asset of assets) expect((await get(`/ui/queues/${asset}`)).status).toBe(200);
      expect((await fetch(`${api.base}/ui/queues/${assets[0]}`)).status).toBe(401);

      const names = async () => {
        const res = await get("/ui/queues/api/queues");
        expect(res.status).toBe(200);
        return ((await res.json()) as { queues: { name: string; readOnlyMode: boolean }[] }).queues;
      };
      expect(await names()).toMatchObject([{ name: "host.h1", readOnlyMode: true }]);
      await client.hostQueue("h1").add("create", { x: 1 }, { jobId: "hb-q-1" });
      // A host that joins later shows up once the board reads the hosts again (every 2 s at most).
      await client.hosts.heartbeat(hostStatus("h2"), 60_000);
      await vi.waitFor(async () => expect((await names()).map((q) => q.name).sort()).toEqual(["host.h1", "host.h2"]), {
        timeout: 6000,
        interval: 250,
      });
      const h1 = await get("/ui/queues/api/queues?activeQueue=host.h1&status=waiting&page=1");
      const body = (await h1.json()) as { queues: { name: string; counts: { waiting: number } }[] };
      expect(body.queues.find((q) => q.name === "host.h1")?.counts.waiting).toBe(1);
    } finally {
      await client.close();
    }
  });

  test("the SDK's methods, the CLI's drain (the same code path) and the OpenAPI document", async ({
    redis,
    redisUrl,
    prefix,
    api,
    keys,
    log,
  }) => {
    const admin = new VirtfleetApi({ baseUrl: api.base, token: ADMIN });
    const acme = new VirtfleetApi({ baseUrl: api.base, token: ACME });
    const worker = new Redis(redisUrl);
    const stop = new AbortController();
    try {
      expect(await admin.drainHost("h1")).toMatchObject({ hostId: "h1", draining: true });
      expect(await admin.undrainHost("h1")).toMatchObject({ hostId: "h1", draining: false });
      await expect(acme.drainHost("h1")).rejects.toMatchObject({ code: "FORBIDDEN", status: 403 });

      // The CLI's `hosts drain` goes through the same HostRegistry.setDrained.
      const { VIRTFLEET_API_URL: _url, VIRTFLEET_TOKEN: _token, ...inherited } = process.env;
      const env = { ...inherited, REDIS_URL: redisUrl, VIRTFLEET_PREFIX: prefix };
      const cli = await run(process.execPath, [CLI, "hosts", "drain", "h1"], { env });
      expect(cli.stdout).toBe("h1\tdraining\n");
      expect((await admin.listHosts())[0]?.draining).toBe(true);
      const unknown = await run(process.execPath, [CLI, "hosts", "undrain", "nope"], { env }).catch(
        (e: { code: number; stderr: string }) => e,
      );
      expect(unknown).toMatchObject({ code: 1 });
      expect((unknown as { stderr: string }).stderr).toMatch(/HOST_NOT_FOUND/);

      const events = acme.fleetEvents({ signal: stop.signal })[Symbol.asyncIterator]();
      const first = events.next();
      // The stream starts once its request is answered: fail jobs until the first event arrives.
      let got: IteratorResult<{ jobId: string }> | undefined;
      for (let n = 1; got === undefined; n++) {
        await failJob(log, `hb-sdk-${n}`, `hb-s${n}`, "acme", `error: sdk ${n}`);
        got = await Promise.race([first, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
      }
      expect(got.value?.jobId).toMatch(/^hb-sdk-\d+$/);
      stop.abort();

      expect((await acme.failedJobs({ limit: 1 })).map((j) => j.stderr)).toEqual([
        expect.stringMatching(/^error: sdk/),
      ]);

      await new VmRegistry(redis, keys).put(vmRecord("hb-sdk-vm", "running"));
      await expect(acme.vmConsole("hb-sdk-vm")).rejects.toMatchObject({ code: "HOST_TIMEOUT", status: 504 });
      await worker.subscribe(keys.consoleChannel("h1"));
      worker.on("message", (_channel: string, message: string) => {
        const request = JSON.parse(message) as { id: string };
        void replyConsole(redis, keys, request.id, { lines: ["login:"], updatedAt: "2026-11-30T12:00:00.000Z" });
      });
      expect(await acme.vmConsole("hb-sdk-vm", { lines: 5 })).toEqual({
        vm: "hb-sdk-vm",
        host: "h1",
        lines: ["login:"],
        updatedAt: "2026-11-30T12:00:00.000Z",
      });

      const doc = (await parseOpenApi(structuredClone(buildOpenApi()) as never)) as {
        paths: Record<string, Record<string, unknown>>;
      };
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining([
          "/v1/hosts/{id}/drain",
          "/v1/hosts/{id}/undrain",
          "/v1/jobs",
          "/v1/vms/{name}/console",
          "/v1/events",
        ]),
      );
      expect(Object.keys(doc.paths["/v1/vms/{name}/console"]?.get as object)).toContain("responses");
    } finally {
      stop.abort();
      worker.disconnect();
    }
  });
});
