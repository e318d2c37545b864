import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { parse as parseOpenApi } from "@readme/openapi-parser";
import { ApiServer, SIGNATURE_HEADER, sign, TIMESTAMP_HEADER, TokenStore } from "@virtfleet/server";
import fc from "fast-check";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  domainState,
  type FleetEnv,
  filesIn,
  forceClean,
  jsonLines,
  leftovers,
  runCli,
  startWorker,
  tinySpec,
  vmName,
  type WorkerProcess,
} from "./harness.js";

const SECRET = "webhook-secret-for-tests-0123456789";
const TOKENS = {
  acme: "acme-token-0123456789abcdef",
  acmeRead: "acme-read-0123456789abcdef",
  globex: "globex-token-0123456789abcdef",
  small: "small-token-0123456789abcdef",
  metrics: "metrics-token-0123456789abcdef",
};
const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
let server: ApiServer;
let worker: WorkerProcess;
let base: string;
let redis: Redis;

async function call(
  method: string,
  path: string,
  token: string | undefined,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(base + path, {
    method,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json as Record<string, unknown>, headers: res.headers };
}

interface SseEvent {
  id: string;
  data: { phase: string; jobId: string; vm: string };
}

/** Reads an SSE stream over a raw connection; `stopAfter` drops the connection after that many events. */
function readSse(
  path: string,
  token: string,
  lastEventId?: string,
  stopAfter?: number,
): Promise<{ events: SseEvent[]; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      base + path,
      { headers: { authorization: `Bearer ${token}`, ...(lastEventId ? { "last-event-id": lastEventId } : {}) } },
      (res) => {
        let buffer = "";
        const events: SseEvent[] = [];
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffer += chunk;
          let cut = buffer.indexOf("\n\n");
          while (cut >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const id = /^id: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (id !== undefined && data !== undefined) events.push({ id, data: JSON.parse(data) });
            if (stopAfter !== undefined && events.length >= stopAfter) {
              req.destroy();
              resolve({ events, ended: false });
              return;
            }
            cut = buffer.indexOf("\n\n");
          }
        });
        res.on("end", () => resolve({ events, ended: true }));
        res.on("error", reject);
      },
    );
    req.on("error", (e) => (stopAfter !== undefined ? undefined : reject(e)));
  });
}

async function jobKeys(): Promise<string[]> {
  return (await redis.keys(`${fleet.prefix}:job:*`)).sort();
}

async function waitJob(jobId: string, token = TOKENS.acme): Promise<string> {
  const { events } = await readSse(`/v1/jobs/${jobId}/events`, token);
  return events.at(-1)?.data.phase ?? "none";
}

beforeAll(async () => {
  redis = new Redis(fleet.redisUrl);
  const tokens = new TokenStore([
    { id: "acme-rw", token: TOKENS.acme, scopes: ["vms:read", "vms:write", "hosts:read"], tenant: "acme" },
    { id: "acme-ro", token: TOKENS.acmeRead, scopes: ["vms:read"], tenant: "acme" },
    { id: "globex-rw", token: TOKENS.globex, scopes: ["vms:read", "vms:write"], tenant: "globex" },
    {
      id: "small-rw",
      token: TOKENS.small,
      scopes: ["vms:read", "vms:write"],
      tenant: "small",
      quota: { vms: 2, memoryMiB: 4096 },
      rateLimit: 100_000,
    },
    { id: "prometheus", token: TOKENS.metrics, scopes: ["metrics:read"], tenant: "ops" },
  ]);
  server = new ApiServer({
    redisUrl: fleet.redisUrl,
    prefix: fleet.prefix,
    tokens,
    logger: pino({ level: "warn" }),
    port: 0,
    webhookSecret: SECRET,
    // The receiver below listens on loopback, which webhooks may reach only when allowed.
    webhookAllowPrivate: true,
    webhookMinTimeoutMs: 100,
  });
  await server.start();
  base = server.url;
  worker = await startWorker(fleet, { env: { VIRTFLEET_CAPACITY_VCPUS: "32", VIRTFLEET_CAPACITY_MEMORY_MB: "8192" } });
});

afterAll(async () => {
  await server?.close();
  await worker?.stop();
  redis?.disconnect();
  const left = await leftovers();
  const files = await filesIn(worker.storageDir);
  await forceClean([worker.storageDir]);
  expect({ ...left, files }).toEqual({ domains: [], pools: [], files: [] });
});

describe("the HTTP API against a real worker", () => {
  it("creates a batch of 5 VMs, streams its events to the end, and destroys them", async () => {
    const pattern = `vft-api-${randomUUID().slice(0, 6)}-{n}`;
    const created = await call("POST", "/v1/batches", TOKENS.acme, {
      template: { ...tinySpec("x"), name: pattern },
      count: 5,
    });
    expect(created.status).toBe(202);
    const { batchId, items } = created.body as { batchId: string; items: { vm: string; jobId: string }[] };
    expect(items.map((i) => i.vm)).toEqual([1, 2, 3, 4, 5].map((n) => pattern.replace("{n}", String(n))));
    const { events, ended } = await readSse(`/v1/batches/${batchId}/events`, TOKENS.acme);
    expect(ended).toBe(true);
    const terminal = events.filter((e) => ["done", "failed", "cancelled"].includes(e.data.phase));
    expect(terminal.map((e) => e.data.phase)).toEqual(Array(5).fill("done"));
    const status = await call("GET", `/v1/batches/${batchId}`, TOKENS.acme);
    expect(status.body).toMatchObject({ total: 5, counts: { done: 5 } });
    for (const i of items) expect(await domainState(i.vm)).toBe("running");
    const listed = await call("GET", "/v1/vms", TOKENS.acme);
    expect((listed.body as unknown as { name: string }[]).map((v) => v.name).sort()).toEqual(
      items.map((i) => i.vm).sort(),
    );

    const destroys = await Promise.all(items.map((i) => call("DELETE", `/v1/vms/${i.vm}`, TOKENS.acme)));
    expect(destroys.map((d) => d.status)).toEqual(Array(5).fill(202));
    const ends = await Promise.all(destroys.map((d) => waitJob(String(d.body.jobId))));
    expect(ends).toEqual(Array(5).fill("done"));
    for (const i of items) expect(await domainState(i.vm)).toBeUndefined();
  });

  it("an SSE client dropped mid-stream and reconnected with Last-Event-ID sees every phase exactly once", async () => {
    const name = vmName("sse");
    const created = await call("POST", "/v1/vms", TOKENS.acme, {
      spec: tinySpec(name),
      guestReady: { pattern: "VIRTFLEET_READY", timeoutSec: 60 },
    });
    expect(created.status).toBe(202);
    const jobId = String(created.body.jobId);
    const first = await readSse(`/v1/jobs/${jobId}/events`, TOKENS.acme, undefined, 3);
    expect(first.events).toHaveLength(3);
    const rest = await readSse(`/v1/jobs/${jobId}/events`, TOKENS.acme, first.events.at(-1)?.id);
    expect(rest.ended).toBe(true);
    const phases = [...first.events, ...rest.events].map((e) => e.data.phase);
    expect(phases).toEqual([
      "queued",
      "placed",
      "disk.creating",
      "disk.ready",
      "domain.defining",
      "domain.running",
      "guest.ready",
      "done",
    ]);
    const ids = [...first.events, ...rest.events].map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    const job = await call("GET", `/v1/jobs/${jobId}`, TOKENS.acme);
    expect(job.body).toMatchObject({ jobId, phase: "done", vm: name });
    expect(await waitJob(String((await call("DELETE", `/v1/vms/${name}`, TOKENS.acme)).body.jobId))).toBe("done");
  });

  it("auth: no token 401, wrong scope 403, another tenant's things 404, and nothing is enqueued", async () => {
    const name = vmName("auth");
    const created = await call("POST", "/v1/vms", TOKENS.acme, { spec: tinySpec(name) });
    const jobId = String(created.body.jobId);
    expect(await waitJob(jobId)).toBe("done");
    const before = await jobKeys();
    const spec = { spec: tinySpec(vmName("nope")) };
    const cases: [string, string, string | undefined, unknown, number, string][] = [
      ["POST", "/v1/vms", undefined, spec, 401, "UNAUTHENTICATED"],
      ["POST", "/v1/vms", "not-a-known-token-at-all", spec, 401, "UNAUTHENTICATED"],
      ["GET", "/v1/vms", undefined, undefined, 401, "UNAUTHENTICATED"],
      ["POST", "/v1/vms", TOKENS.acmeRead, spec, 403, "FORBIDDEN"],
      ["DELETE", `/v1/vms/${name}`, TOKENS.acmeRead, undefined, 403, "FORBIDDEN"],
      ["GET", "/v1/hosts", TOKENS.globex, undefined, 403, "FORBIDDEN"],
      ["GET", `/v1/jobs/${jobId}`, TOKENS.globex, undefined, 404, "JOB_NOT_FOUND"],
      ["GET", `/v1/jobs/${jobId}/events`, TOKENS.globex, undefined, 404, "JOB_NOT_FOUND"],
      ["POST", `/v1/jobs/${jobId}/cancel`, TOKENS.globex, undefined, 404, "JOB_NOT_FOUND"],
      ["GET", `/v1/vms/${name}`, TOKENS.globex, undefined, 404, "VM_NOT_FOUND"],
      ["DELETE", `/v1/vms/${name}`, TOKENS.globex, undefined, 404, "VM_NOT_FOUND"],
    ];
    for (const [method, path, token, body, status, code] of cases) {
      const r = await call(method, path, token, body);
      expect([method, path, r.status, r.body.code]).toEqual([method, path, status, code]);
      expect(r.headers.get("content-type")).toMatch(/application\/problem\+json/);
    }
    expect((await call("GET", "/v1/vms", TOKENS.globex)).body).toEqual([]);
    expect(await jobKeys()).toEqual(before);
    expect(await domainState(name)).toBe("running");
    expect(await waitJob(String((await call("DELETE", `/v1/vms/${name}`, TOKENS.acme)).body.jobId))).toBe("done");
  });

  it("quotas are enforced at admission with QUOTA_EXCEEDED; idempotent retries give the first answer", async () => {
    const a = vmName("qa");
    const b = vmName("qb");
    const key = randomUUID();
    const first = await call("POST", "/v1/vms", TOKENS.small, { spec: tinySpec(a) }, { "idempotency-key": key });
    expect(first.status).toBe(202);
    const again = await call("POST", "/v1/vms", TOKENS.small, { spec: tinySpec(a) }, { "idempotency-key": key });
    expect(again.status).toBe(202);
    expect(again.body.jobId).toBe(first.body.jobId);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const other = await call("POST", "/v1/vms", TOKENS.small, { spec: tinySpec(b) }, { "idempotency-key": key });
    expect([other.status, other.body.code]).toEqual([409, "IDEMPOTENCY_CONFLICT"]);

    expect((await call("POST", "/v1/vms", TOKENS.small, { spec: tinySpec(b) })).status).toBe(202);
    const before = await jobKeys();
    const over = await call("POST", "/v1/vms", TOKENS.small, { spec: tinySpec(vmName("qc")) });
    expect([over.status, over.body.code, over.body.field]).toEqual([403, "QUOTA_EXCEEDED", "quota.vms"]);
    expect(await jobKeys()).toEqual(before);
    for (const n of [a, b])
      expect(await waitJob(String((await call("DELETE", `/v1/vms/${n}`, TOKENS.small)).body.jobId), TOKENS.small)).toBe(
        "done",
      );
    // Destroyed VMs give their quota back.
    const c = vmName("qd");
    const after = await call("POST", "/v1/vms", TOKENS.small, { spec: tinySpec(c) });
    expect(after.status).toBe(202);
    expect(await waitJob(String(after.body.jobId), TOKENS.small)).toBe("done");
    expect(await waitJob(String((await call("DELETE", `/v1/vms/${c}`, TOKENS.small)).body.jobId), TOKENS.small)).toBe(
      "done",
    );
  });

  it("posts terminal events to the callback URL, signed with HMAC-SHA256, retrying a failing receiver", async () => {
    const received: { body: string; signature: string; timestamp: string }[] = [];
    let failures = 1;
    const receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => {
        body += d;
      });
      req.on("end", () => {
        if (failures-- > 0) {
          res.writeHead(503).end();
          return;
        }
        received.push({
          body,
          signature: String(req.headers[SIGNATURE_HEADER]),
          timestamp: String(req.headers[TIMESTAMP_HEADER]),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    try {
      const name = vmName("hook");
      const created = await call("POST", "/v1/vms", TOKENS.acme, { spec: tinySpec(name), callbackUrl: url });
      expect(await waitJob(String(created.body.jobId))).toBe("done");
      const deadline = Date.now() + 15_000;
      while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(received).toHaveLength(1);
      const [got] = received;
      assert(got !== undefined);
      expect(JSON.parse(got.body)).toMatchObject({ jobId: created.body.jobId, phase: "done", vm: name });
      expect(got.signature).toBe(sign(SECRET, got.timestamp, got.body));
      expect(got.signature).not.toBe(sign("another-secret", got.timestamp, got.body));
      expect(await waitJob(String((await call("DELETE", `/v1/vms/${name}`, TOKENS.acme)).body.jobId))).toBe("done");
    } finally {
      receiver.close();
    }
  });

  it("thousands of malformed bodies at every endpoint: only 4xx answers, never a 500, nothing enqueued", async () => {
    const before = await jobKeys();
    const queued = await redis.llen(`${fleet.prefix}:host.${worker.hostId}:wait`);
    const subprocesses = () => worker.logs().split('"msg":"run"').length;
    const ran = subprocesses();
    const endpoints: [string, string][] = [
      ["POST", "/v1/vms"],
      ["POST", "/v1/batches"],
      ["GET", "/v1/vms"],
      ["GET", "/v1/vms/x"],
      ["DELETE", "/v1/vms/vft-none"],
      ["GET", "/v1/jobs/none"],
      ["POST", "/v1/jobs/none/cancel"],
      ["GET", "/v1/batches/none"],
      ["GET", "/v1/hosts"],
    ];
    const junk = fc.oneof(
      fc.json(),
      fc.string(),
      fc.object(),
      fc.record({ spec: fc.anything() }),
      fc.record({
        spec: fc.record({ name: fc.string(), memoryMiB: fc.anything(), vcpus: fc.anything(), disks: fc.anything() }),
      }),
      fc.record({ template: fc.anything(), count: fc.anything(), vms: fc.anything() }),
      fc.record({
        spec: fc.constant(tinySpec("ok")),
        placement: fc.anything(),
        callbackUrl: fc.anything().filter((v) => v !== undefined),
        guestReady: fc.anything(),
      }),
    );
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...endpoints), junk, fc.boolean(), async ([method, path], body, asString) => {
        const payload =
          method === "GET" || method === "DELETE"
            ? undefined
            : asString
              ? String(JSON.stringify(body)).slice(0, -1)
              : body;
        const r = await call(
          method,
          `${path}?${new URLSearchParams({ x: (JSON.stringify(body) ?? "").slice(0, 20) })}`,
          TOKENS.small,
          payload,
        );
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        return r.status >= 400 && r.status < 500;
      }),
      { numRuns: 2000 },
    );
    expect([...statuses.keys()].every((s) => s >= 400 && s < 500)).toBe(true);
    expect(await jobKeys()).toEqual(before);
    expect(await redis.llen(`${fleet.prefix}:host.${worker.hostId}:wait`)).toBe(queued);
    expect(subprocesses()).toBe(ran);
  });

  it("the CLI works through the API when VIRTFLEET_API_URL and VIRTFLEET_TOKEN are set", async () => {
    const env = { VIRTFLEET_API_URL: base, VIRTFLEET_TOKEN: TOKENS.globex, REDIS_URL: "redis://127.0.0.1:1" };
    const name = vmName("cli");
    const created = await runCli(
      [
        "create",
        "--name",
        name,
        "--memory",
        "192",
        "--disk",
        "size=1,backing=tiny",
        "--boot",
        "kernel=tiny,initrd=tiny",
        "--network",
        "none",
        "--virt-type",
        "qemu",
        "--wait",
        "--json",
      ],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    expect(jsonLines(created.stdout).map((e) => e.phase)).toEqual([
      "queued",
      "placed",
      "disk.creating",
      "disk.ready",
      "domain.defining",
      "domain.running",
      "done",
    ]);
    const ls = JSON.parse((await runCli(["ls", "--json"], env)).stdout) as { name: string }[];
    expect(ls.map((v) => v.name)).toEqual([name]);
    const bad = await runCli(
      [
        "create",
        "--name",
        name,
        "--memory",
        "192",
        "--vcpus",
        "2",
        "--disk",
        "size=1,backing=tiny",
        "--boot",
        "kernel=tiny",
        "--json",
      ],
      env,
    );
    expect(bad.code).toBe(1);
    expect(jsonLines(bad.stdout)[0]).toMatchObject({ error: { code: "NAME_CLASH" } });
    const destroyed = await runCli(["destroy", name, "--wait"], env);
    expect(destroyed.code).toBe(0);
    expect(await domainState(name)).toBeUndefined();
  });

  it("serves a valid OpenAPI 3.1 document, a reference page, health, readiness and metrics", async () => {
    const doc = await call("GET", "/v1/openapi.json", undefined);
    expect(doc.body.openapi).toBe("3.1.0");
    const parsed = await parseOpenApi(structuredClone(doc.body) as never);
    expect(Object.keys((parsed as { paths: object }).paths)).toContain("/v1/batches/{id}/events");
    const page = await fetch(`${base}/v1/docs/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/swagger/i);
    expect((await call("GET", "/healthz", undefined)).status).toBe(200);
    expect((await call("GET", "/readyz", undefined)).body).toMatchObject({ ok: true });
    // /metrics needs a token with metrics:read (the default, VIRTFLEET_METRICS_AUTH=token).
    expect((await call("GET", "/metrics", undefined)).status).toBe(401);
    const metrics = await (
      await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKENS.metrics}` } })
    ).text();
    // queued and placed are written together (one all-events entry): both counted.
    for (const phase of ["queued", "placed", "done"])
      expect(metrics).toMatch(new RegExp(`virtfleet_job_events_total\\{kind="create",phase="${phase}"\\} [1-9]`));
    expect(metrics).toMatch(/virtfleet_phase_duration_seconds_bucket/);
    expect(metrics).toMatch(new RegExp(`virtfleet_host_capacity\\{host="${worker.hostId}",resource="vcpus"\\} 32`));
    expect(metrics).toMatch(/virtfleet_queue_jobs\{host="[^"]+",state="completed"\}/);
  });
});
