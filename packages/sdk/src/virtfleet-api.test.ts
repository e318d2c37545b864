import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Phase, ProgressEvent, StreamedEvent } from "@virtfleet/core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ApiError } from "./errors.js";
import { VirtfleetApi } from "./virtfleet-api.js";

/** One request as the scripted server saw it. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void;

const TOKEN = "test-token-0123456789";
let server: Server;
let baseUrl: string;
let handler: Handler;
let requests: Seen[];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const seen: Seen = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(seen);
      handler(req, res, seen);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

beforeEach(() => {
  requests = [];
  handler = (_req, res) => json(res, 500, { unexpected: true });
});

afterAll(async () => {
  server.closeAllConnections();
  server.close();
  await once(server, "close");
});

function client(extra: { maxReconnects?: number } = {}): VirtfleetApi {
  return new VirtfleetApi({ baseUrl: `${baseUrl}/`, token: TOKEN, reconnectDelayMs: 5, ...extra });
}

function json(res: ServerResponse, status: number, body: unknown, type = "application/json"): void {
  res.writeHead(status, { "content-type": type });
  res.end(JSON.stringify(body));
}

function problem(res: ServerResponse, status: number, code: string, detail: string, field?: string): void {
  json(
    res,
    status,
    { type: `https://virtfleet.dev/problems/${code.toLowerCase()}`, title: "Error", status, code, detail, field },
    "application/problem+json",
  );
}

function progress(jobId: string, phase: Phase, percent: number): ProgressEvent {
  return { jobId, kind: "create", vm: `vm-${jobId}`, phase, percent, message: phase, at: "2025-01-01T00:00:00.000Z" };
}

function startSse(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.flushHeaders();
}

function sendSse(res: ServerResponse, id: string, event: ProgressEvent): void {
  res.write(`id: ${id}\nevent: progress\ndata: ${JSON.stringify(event)}\n\n`);
}

/** The five events of one create job, ids `<jobId>-1` … `<jobId>-5`, the last one terminal. */
function jobScript(jobId: string): { id: string; event: ProgressEvent }[] {
  const phases: [Phase, number][] = [
    ["queued", 0],
    ["placed", 5],
    ["disk.ready", 30],
    ["domain.running", 80],
    ["done", 100],
  ];
  return phases.map(([phase, percent], i) => ({ id: `${jobId}-${i + 1}`, event: progress(jobId, phase, percent) }));
}

/** The events after `lastEventId` (all of them without one), as a resuming server sends them. */
function after(script: { id: string; event: ProgressEvent }[], lastEventId: string | string[] | undefined) {
  if (typeof lastEventId !== "string") return script;
  return script.slice(script.findIndex((s) => s.id === lastEventId) + 1);
}

const VM_VIEW = {
  name: "web-1",
  hostId: "host-a",
  state: "running",
  memoryMiB: 1024,
  vcpus: 2,
  labels: { env: "prod" },
  jobId: "j1",
  updatedAt: "2025-01-01T00:00:00.000Z",
};

describe("VirtfleetApi JSON calls", () => {
  it("createVm sends the bearer token, the Idempotency-Key and the body, and parses the answer", async () => {
    handler = (_req, res) => json(res, 202, { jobId: "j1", vm: "web-1", kind: "create" });
    const body = { spec: { name: "web-1", memoryMiB: 1024, vcpus: 2, disks: [{ sizeGiB: 10 }] } };
    const accepted = await client().createVm(body, { idempotencyKey: "key-1" });

    expect(accepted).toEqual({ jobId: "j1", vm: "web-1", kind: "create" });
    expect(requests).toHaveLength(1);
    const [seen] = requests;
    expect(seen?.method).toBe("POST");
    expect(seen?.url).toBe("/v1/vms");
    expect(seen?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(seen?.headers["idempotency-key"]).toBe("key-1");
    expect(seen?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(seen?.body ?? "")).toEqual(body);
  });

  it("createBatch sends the Idempotency-Key and parses accepted and refused items", async () => {
    handler = (_req, res) =>
      json(res, 202, {
        batchId: "b1",
        items: [
          { vm: "lab-1", jobId: "j1" },
          { vm: "lab-2", error: { code: "NO_CAPACITY", message: "no host has room" } },
        ],
      });
    const accepted = await client().createBatch(
      { template: { name: "lab-{n}", memoryMiB: 512, vcpus: 1, disks: [{ sizeGiB: 5 }] }, count: 2 },
      { idempotencyKey: "batch-key" },
    );

    expect(accepted.batchId).toBe("b1");
    expect(accepted.items[1]?.error?.code).toBe("NO_CAPACITY");
    expect(requests[0]?.method).toBe("POST");
    expect(requests[0]?.url).toBe("/v1/batches");
    expect(requests[0]?.headers["idempotency-key"]).toBe("batch-key");
    expect(requests[0]?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("does not send an Idempotency-Key when none is given", async () => {
    handler = (_req, res) => json(res, 202, { jobId: "j2", vm: "web-1", kind: "destroy" });
    await client().destroyVm("web-1");
    expect(requests[0]?.headers["idempotency-key"]).toBeUndefined();
  });

  it("listVms sends the filters as a query string and parses the list", async () => {
    handler = (_req, res) => json(res, 200, [VM_VIEW]);
    const vms = await client().listVms({ host: "host-a", state: "running", label: "env=prod" });

    expect(vms).toEqual([VM_VIEW]);
    const url = new URL(requests[0]?.url ?? "", baseUrl);
    expect(url.pathname).toBe("/v1/vms");
    expect(url.searchParams.get("host")).toBe("host-a");
    expect(url.searchParams.get("state")).toBe("running");
    expect(url.searchParams.get("label")).toBe("env=prod");
    expect(requests[0]?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("getVm, destroyVm, getJob, cancelJob, getBatch and listHosts hit their routes and parse the answers", async () => {
    const job = {
      jobId: "j1",
      kind: "create",
      vm: "web-1",
      phase: "placed",
      percent: 5,
      message: "placed",
      createdAt: "2025-01-01T00:00:00.000Z",
      updatedAt: "2025-01-01T00:00:01.000Z",
    };
    const batch = {
      batchId: "b1",
      createdAt: "2025-01-01T00:00:00.000Z",
      total: 1,
      counts: { done: 1 },
      items: [{ vm: "lab-1", jobId: "j1", phase: "done" }],
    };
    const host = {
      hostId: "host-a",
      up: true,
      draining: false,
      virtTypes: ["kvm"],
      labels: {},
      capacity: { memoryMiB: 8192, vcpus: 8 },
      allocated: { memoryMiB: 1024, vcpus: 2 },
      diskFreeGiB: 100,
      runningVms: 1,
      images: ["debian12.qcow2"],
      version: "0.1.0",
      heartbeatAt: "2025-01-01T00:00:00.000Z",
    };
    handler = (req, res) => {
      const route = `${req.method} ${req.url}`;
      if (route === "GET /v1/vms/web-1") json(res, 200, VM_VIEW);
      else if (route === "DELETE /v1/vms/web-1") json(res, 202, { jobId: "j2", vm: "web-1", kind: "destroy" });
      else if (route === "GET /v1/jobs/j1") json(res, 200, job);
      else if (route === "POST /v1/jobs/j1/cancel") json(res, 200, { jobId: "j1", outcome: "cancelled" });
      else if (route === "GET /v1/batches/b1") json(res, 200, batch);
      else if (route === "GET /v1/hosts") json(res, 200, [host]);
      else problem(res, 404, "NOT_FOUND", route);
    };
    const api = client();

    expect(await api.getVm("web-1")).toEqual(VM_VIEW);
    expect(await api.destroyVm("web-1", { idempotencyKey: "d-1" })).toEqual({
      jobId: "j2",
      vm: "web-1",
      kind: "destroy",
    });
    expect(await api.getJob("j1")).toEqual(job);
    expect(await api.cancelJob("j1")).toEqual({ jobId: "j1", outcome: "cancelled" });
    expect(await api.getBatch("b1")).toEqual(batch);
    expect(await api.listHosts()).toEqual([host]);
    expect(requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      "GET /v1/vms/web-1",
      "DELETE /v1/vms/web-1",
      "GET /v1/jobs/j1",
      "POST /v1/jobs/j1/cancel",
      "GET /v1/batches/b1",
      "GET /v1/hosts",
    ]);
    expect(requests[1]?.headers["idempotency-key"]).toBe("d-1");
    expect(requests.every((r) => r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });

  it("escapes path segments", async () => {
    handler = (_req, res) => problem(res, 404, "JOB_NOT_FOUND", "no such job");
    await expect(client().getJob("a/b?c")).rejects.toBeInstanceOf(ApiError);
    expect(requests[0]?.url).toBe("/v1/jobs/a%2Fb%3Fc");
  });

  it("maps a problem+json answer to an ApiError with its status, code and field", async () => {
    handler = (_req, res) => problem(res, 400, "INVALID_SPEC", "must be at least 64 MiB", "spec.memoryMiB");
    const error = await client()
      .createVm({ spec: { name: "web-1", memoryMiB: 1, vcpus: 1, disks: [{ sizeGiB: 1 }] } })
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ApiError);
    expect(error).toBeInstanceOf(Error);
    const apiError = error as ApiError;
    expect(apiError.name).toBe("ApiError");
    expect(apiError.status).toBe(400);
    expect(apiError.code).toBe("INVALID_SPEC");
    expect(apiError.field).toBe("spec.memoryMiB");
    expect(apiError.problem.detail).toBe("must be at least 64 MiB");
    expect(apiError.message).toContain("must be at least 64 MiB");
  });

  it("maps a 404 problem to VM_NOT_FOUND without a field", async () => {
    handler = (_req, res) => problem(res, 404, "VM_NOT_FOUND", "no VM named ghost");
    const error = (await client()
      .getVm("ghost")
      .catch((e: unknown) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(404);
    expect(error.code).toBe("VM_NOT_FOUND");
    expect(error.field).toBeUndefined();
  });

  it("falls back to INTERNAL when an error answer is not a problem", async () => {
    handler = (_req, res) => {
      res.writeHead(502, { "content-type": "text/html" });
      res.end("<html>bad gateway</html>");
    };
    const error = (await client()
      .listHosts()
      .catch((e: unknown) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(502);
    expect(error.code).toBe("INTERNAL");
    expect(error.problem.detail).toContain("bad gateway");
  });

  it("throws when a success answer does not match its schema", async () => {
    handler = (_req, res) => json(res, 202, { vm: "web-1", kind: "create" });
    const error = (await client()
      .createVm({ spec: { name: "web-1", memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] } })
      .catch((e: unknown) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.code).toBe("INTERNAL");
    expect(error.problem.detail).toContain("jobId");
  });

  it("throws when a success answer is not JSON", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("hello");
    };
    await expect(client().listVms()).rejects.toMatchObject({ name: "ApiError", code: "INTERNAL" });
  });

  it("uses the fetch it is given", async () => {
    handler = (_req, res) => json(res, 200, []);
    const calls: string[] = [];
    const api = new VirtfleetApi({
      baseUrl,
      token: TOKEN,
      fetch: (input, init) => {
        calls.push(String(input));
        return fetch(input, init);
      },
    });
    expect(await api.listHosts()).toEqual([]);
    expect(calls).toEqual([`${baseUrl}/v1/hosts`]);
  });

  it("getLease, extendLease and releaseLease hit the lease routes and parse the answers", async () => {
    const lease = {
      id: "lease-0123456789abcdef",
      kind: "claim",
      target: "ci-ab12",
      pool: "ci",
      createdAt: "2025-01-01T00:00:00.000Z",
      expiresAt: "2025-01-01T00:30:00.000Z",
      maxExpiresAt: "2025-01-02T00:00:00.000Z",
    };
    handler = (req, res, seen) => {
      const route = `${req.method} ${req.url}`;
      if (route === "GET /v1/leases/lease-0123456789abcdef") json(res, 200, lease);
      else if (route === "POST /v1/leases/lease-0123456789abcdef/extend")
        json(res, 200, { ...lease, expiresAt: "2025-01-01T01:00:00.000Z", sent: JSON.parse(seen.body) });
      else if (route === "DELETE /v1/leases/lease-0123456789abcdef") json(res, 200, lease);
      else problem(res, 404, "NOT_FOUND", route);
    };
    const api = client();
    expect(await api.getLease(lease.id)).toEqual(lease);
    const extended = await api.extendLease(lease.id, "1h", { idempotencyKey: "k-1" });
    expect(extended.expiresAt).toBe("2025-01-01T01:00:00.000Z");
    expect(JSON.parse(requests.at(-1)?.body ?? "{}")).toEqual({ by: "1h" });
    expect(requests.at(-1)?.headers["idempotency-key"]).toBe("k-1");
    expect(await api.releaseLease(lease.id)).toEqual(lease);
    await expect(api.getLease("lease-ffff")).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});

describe("VirtfleetApi.jobEvents", () => {
  it("reconnects after the connection drops, resumes from the last id, and yields each event once", async () => {
    const script = jobScript("j1");
    const connections: ServerResponse[] = [];
    handler = (req, res) => {
      connections.push(res);
      startSse(res);
      if (connections.length === 1) {
        // The first connection sends two events, then hangs until the test drops it.
        for (const s of script.slice(0, 2)) sendSse(res, s.id, s.event);
        return;
      }
      // A resuming server that also replays the last event seen (the client must skip it),
      // and keeps the connection open after the terminal event (the client must stop by itself).
      const lastId = req.headers["last-event-id"];
      const from = typeof lastId === "string" ? script.findIndex((s) => s.id === lastId) : 0;
      for (const s of script.slice(from)) sendSse(res, s.id, s.event);
    };

    const received: StreamedEvent[] = [];
    for await (const event of client().jobEvents("j1")) {
      received.push(event);
      if (received.length === 2) connections[0]?.socket?.destroy();
    }

    expect(received.map((e) => e.id)).toEqual(["j1-1", "j1-2", "j1-3", "j1-4", "j1-5"]);
    expect(received.map((e) => e.phase)).toEqual(["queued", "placed", "disk.ready", "domain.running", "done"]);
    expect(received[4]).toEqual({ ...script[4]?.event, id: "j1-5" });
    expect(requests).toHaveLength(2);
    expect(requests.every((r) => r.url === "/v1/jobs/j1/events")).toBe(true);
    expect(requests[0]?.headers["last-event-id"]).toBeUndefined();
    expect(requests[1]?.headers["last-event-id"]).toBe("j1-2");
    expect(requests.every((r) => r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(requests[0]?.headers.accept).toBe("text/event-stream");
  });

  it("survives a server that drops the connection right after writing, over several reconnects", async () => {
    const script = jobScript("j1");
    handler = (req, res) => {
      startSse(res);
      // Each connection sends at most two events, then is cut.
      const rest = after(script, req.headers["last-event-id"]).slice(0, 2);
      for (const s of rest) sendSse(res, s.id, s.event);
      res.write(": bye\n\n", () => res.socket?.destroy());
    };
    const received: string[] = [];
    for await (const event of client().jobEvents("j1")) received.push(event.id);

    expect(received).toEqual(script.map((s) => s.id));
    // Every reconnect names the last event the client had yielded by then.
    for (const [i, r] of requests.entries()) {
      const lastId = r.headers["last-event-id"];
      if (i === 0) expect(lastId).toBeUndefined();
      else expect(received).toContain(lastId);
    }
    expect(requests.length).toBeGreaterThanOrEqual(3);
  });

  it("reconnects when the server ends the stream cleanly before the terminal event", async () => {
    const script = jobScript("j1");
    let streams = 0;
    handler = (req, res) => {
      if (req.url === "/v1/jobs/j1") {
        json(res, 200, {
          jobId: "j1",
          kind: "create",
          vm: "vm-j1",
          phase: "placed",
          percent: 5,
          message: "placed",
          createdAt: "2025-01-01T00:00:00.000Z",
          updatedAt: "2025-01-01T00:00:00.000Z",
        });
        return;
      }
      streams += 1;
      startSse(res);
      const rest = after(script, req.headers["last-event-id"]);
      for (const s of streams === 1 ? rest.slice(0, 1) : rest) sendSse(res, s.id, s.event);
      res.end();
    };
    const received: string[] = [];
    for await (const event of client().jobEvents("j1")) received.push(event.id);

    expect(received).toEqual(script.map((s) => s.id));
    expect(streams).toBe(2);
    expect(requests.map((r) => r.url)).toEqual(["/v1/jobs/j1/events", "/v1/jobs/j1", "/v1/jobs/j1/events"]);
    expect(requests[2]?.headers["last-event-id"]).toBe("j1-1");
  });

  it("ends without reconnecting forever when resumed after the terminal event of a finished job", async () => {
    handler = (req, res) => {
      if (req.url === "/v1/jobs/j1") {
        json(res, 200, {
          jobId: "j1",
          kind: "create",
          vm: "vm-j1",
          phase: "done",
          percent: 100,
          message: "done",
          createdAt: "2025-01-01T00:00:00.000Z",
          updatedAt: "2025-01-01T00:00:00.000Z",
        });
        return;
      }
      startSse(res);
      res.end();
    };
    const received: StreamedEvent[] = [];
    for await (const event of client().jobEvents("j1", { lastEventId: "j1-5" })) received.push(event);

    expect(received).toEqual([]);
    expect(requests.map((r) => r.url)).toEqual(["/v1/jobs/j1/events", "/v1/jobs/j1"]);
    expect(requests[0]?.headers["last-event-id"]).toBe("j1-5");
  });

  it("sends the given lastEventId on the first connection and skips that event if replayed", async () => {
    const script = jobScript("j1");
    handler = (_req, res) => {
      startSse(res);
      for (const s of script.slice(2)) sendSse(res, s.id, s.event);
    };
    const received: string[] = [];
    for await (const event of client().jobEvents("j1", { lastEventId: "j1-3" })) received.push(event.id);

    expect(received).toEqual(["j1-4", "j1-5"]);
    expect(requests[0]?.headers["last-event-id"]).toBe("j1-3");
  });

  it("ignores events of other types", async () => {
    const script = jobScript("j1");
    handler = (_req, res) => {
      startSse(res);
      res.write(`: keep-alive\n\nevent: ping\ndata: {}\n\n`);
      for (const s of script) sendSse(res, s.id, s.event);
    };
    const received: string[] = [];
    for await (const event of client().jobEvents("j1")) received.push(event.id);
    expect(received).toEqual(script.map((s) => s.id));
  });

  it("throws the ApiError of an answer a retry cannot fix, without reconnecting", async () => {
    handler = (_req, res) => problem(res, 404, "JOB_NOT_FOUND", "no job j9");
    const error = await (async () => {
      for await (const _ of client().jobEvents("j9")) {
        // nothing arrives
      }
    })().catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe("JOB_NOT_FOUND");
    expect((error as ApiError).status).toBe(404);
    expect(requests).toHaveLength(1);
  });

  it("retries a 503 and gives up after maxReconnects fruitless reconnects", async () => {
    handler = (_req, res) => problem(res, 503, "LIBVIRT_UNAVAILABLE", "try later");
    const error = await (async () => {
      for await (const _ of client({ maxReconnects: 3 }).jobEvents("j1")) {
        // nothing arrives
      }
    })().catch((e: unknown) => e);

    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain("gave up after 3 reconnects");
    expect((error as Error).cause).toBeInstanceOf(ApiError);
    expect(requests).toHaveLength(4);
  });

  it("throws on a malformed event", async () => {
    handler = (_req, res) => {
      startSse(res);
      res.write(`id: 1\nevent: progress\ndata: {"jobId":"j1","phase":"nonsense"}\n\n`);
    };
    const error = await (async () => {
      for await (const _ of client().jobEvents("j1")) {
        // nothing valid arrives
      }
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe("INTERNAL");
    expect(requests).toHaveLength(1);
  });

  it("stops with the signal's reason when aborted, and closes the connection", async () => {
    const script = jobScript("j1");
    let closed: Promise<unknown> | undefined;
    handler = (req, res) => {
      closed = once(req.socket, "close");
      startSse(res);
      sendSse(res, script[0]?.id ?? "", script[0]?.event ?? progress("j1", "queued", 0));
    };
    const controller = new AbortController();
    const received: string[] = [];
    const error = await (async () => {
      for await (const event of client().jobEvents("j1", { signal: controller.signal })) {
        received.push(event.id);
        controller.abort(new Error("enough"));
      }
    })().catch((e: unknown) => e);

    expect(received).toEqual(["j1-1"]);
    expect((error as Error).message).toBe("enough");
    await expect(closed).resolves.toBeDefined();
  });

  it("closes the connection when the caller stops reading", async () => {
    const script = jobScript("j1");
    let closed: Promise<unknown> | undefined;
    handler = (req, res) => {
      closed = once(req.socket, "close");
      startSse(res);
      for (const s of script.slice(0, 2)) sendSse(res, s.id, s.event);
    };
    for await (const event of client().jobEvents("j1")) {
      expect(event.id).toBe("j1-1");
      break;
    }
    await expect(closed).resolves.toBeDefined();
    expect(requests).toHaveLength(1);
  });
});

describe("VirtfleetApi.waitJob", () => {
  it("returns the terminal event and reports every event", async () => {
    const script = jobScript("j1");
    const last = script[4];
    if (last) last.event = { ...last.event, phase: "failed", error: { code: "OUT_OF_DISK", message: "disk full" } };
    handler = (_req, res) => {
      startSse(res);
      for (const s of script) sendSse(res, s.id, s.event);
    };
    const seen: string[] = [];
    const final = await client().waitJob("j1", { onEvent: (e) => void seen.push(e.id) });

    expect(final.id).toBe("j1-5");
    expect(final.phase).toBe("failed");
    expect(final.error?.code).toBe("OUT_OF_DISK");
    expect(seen).toEqual(script.map((s) => s.id));
  });
});

describe("VirtfleetApi.batchEvents", () => {
  it("keeps reading past the first terminal event and ends on the server's clean end", async () => {
    const a = jobScript("ja");
    const b = jobScript("jb");
    // a's job ends first; b's job goes on.
    const script = [...a.slice(0, 2), ...b.slice(0, 2), ...a.slice(2), ...b.slice(2)];
    handler = (_req, res) => {
      startSse(res);
      for (const s of script) sendSse(res, s.id, s.event);
      res.end();
    };
    const received: StreamedEvent[] = [];
    for await (const event of client().batchEvents("b1")) received.push(event);

    expect(received.map((e) => e.id)).toEqual(script.map((s) => s.id));
    expect(received.filter((e) => e.phase === "done").map((e) => e.jobId)).toEqual(["ja", "jb"]);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.url).toBe("/v1/batches/b1/events");
    expect(requests[0]?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("reconnects with Last-Event-ID when the connection drops, then ends on the clean end", async () => {
    const script = [...jobScript("ja"), ...jobScript("jb")];
    const connections: ServerResponse[] = [];
    handler = (req, res) => {
      connections.push(res);
      startSse(res);
      const rest = after(script, req.headers["last-event-id"]);
      if (requests.length === 1) {
        // Cut right after job a's terminal event.
        for (const s of rest.slice(0, 5)) sendSse(res, s.id, s.event);
        return;
      }
      for (const s of rest) sendSse(res, s.id, s.event);
      res.end();
    };
    const received: string[] = [];
    const api = client();
    for await (const event of api.batchEvents("b1")) {
      received.push(event.id);
      if (event.id === "ja-5") connections[0]?.socket?.destroy();
    }

    expect(received).toEqual(script.map((s) => s.id));
    expect(requests).toHaveLength(2);
    expect(requests[1]?.headers["last-event-id"]).toBe("ja-5");
  });
});
