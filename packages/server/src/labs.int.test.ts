import { parse as parseOpenApi } from "@readme/openapi-parser";
import { LAB_LABEL } from "@virtfleet/core";
import { CapacityLedger } from "@virtfleet/fleet";
import { LabKeys, TemplateStore } from "@virtfleet/labs";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { call } from "../../../test/fixtures/api-server.js";
import { hostStatus } from "../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";
import { TokenStore } from "./auth.js";
import { buildOpenApi } from "./openapi.js";
import { ApiServer } from "./server.js";

// The /v1/labs routes against real Redis, with a fake up host (no worker: the VMs' jobs wait in its
// queue, so a lab stays `creating` until it is taken down).

const ACME = "acme-token-0123456789abcdef";
const GLOBEX = "globex-token-0123456789abcdef";
const spec = { memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] };

interface Answer {
  status: number;
  text: string;
  body: Record<string, unknown>;
}
type Call = (method: string, path: string, token: string, body?: unknown) => Promise<Answer>;

async function withServer(
  redisUrl: string,
  prefix: string,
  run: (call: Call, server: ApiServer) => Promise<void>,
): Promise<void> {
  const tokens = new TokenStore([
    { id: "acme", token: ACME, scopes: ["vms:read", "vms:write"], tenant: "acme", quota: { vms: 3 } },
    { id: "globex", token: GLOBEX, scopes: ["vms:read", "vms:write"], tenant: "globex" },
  ]);
  const server = new ApiServer({ redisUrl, prefix, tokens, logger: pino({ level: "silent" }), port: 0 });
  try {
    await server.start();
    const redis = server.fleet.connect();
    await new CapacityLedger(redis, server.fleet.keys).setCapacity("lb-api-host", 65536, 64, 1000);
    await server.fleet.hosts.heartbeat(hostStatus("lb-api-host"), 60_000);
    await new TemplateStore(redis, new LabKeys(prefix)).put("lbt-small", spec);
    redis.disconnect();
    await run((method, path, token, body) => call(server.url, method, path, token, body), server);
  } finally {
    await server.close();
  }
}

/** The whole SSE stream of a lab (it ends once the lab is gone): each event's `event` and data. */
async function sse(url: string, token: string): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
  expect(res.status).toBe(200);
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((block) => block.includes("data: "))
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? "";
      const data = JSON.parse(lines.find((l) => l.startsWith("data: "))?.slice(6) ?? "{}") as Record<string, unknown>;
      return { event, data };
    });
}

describe("API: /v1/labs", () => {
  test("up, show, list, extend, down and the event stream; tenants kept apart", async ({ redisUrl, prefix }) => {
    await withServer(redisUrl, prefix, async (call, server) => {
      const up = await call("POST", "/v1/labs", ACME, {
        name: "lbapi",
        lab: { vms: [{ name: "web", template: "lbt-small", count: 2 }], labels: { course: "c1" } },
        ttl: "30m",
      });
      expect(up.status, up.text).toBe(202);
      expect(up.body).toMatchObject({ name: "lbapi", state: "creating", tenant: "acme", labels: { course: "c1" } });
      const vms = up.body.vms as { name: string; jobId: string; phase: string }[];
      expect(vms.map((v) => v.name)).toEqual(["lbapi-web-1", "lbapi-web-2"]);
      const expiresIn = Date.parse(up.body.expiresAt as string) - Date.now();
      expect(expiresIn).toBeGreaterThan(29 * 60_000);
      expect(expiresIn).toBeLessThanOrEqual(30 * 60_000);
      // One batch, the lab's label on every VM, owned by the tenant.
      for (const v of vms) {
        const job = await server.fleet.log.getJob(v.jobId);
        expect(job?.batchId).toBe(up.body.batchId);
        const record = await server.fleet.vms.get(v.name);
        expect(record?.labels).toEqual({ course: "c1", [LAB_LABEL]: "lbapi" });
        expect(record?.tenant).toBe("acme");
      }

      const again = await call("POST", "/v1/labs", ACME, {
        name: "lbapi",
        lab: { vms: [{ name: "web", template: "lbt-small" }] },
      });
      expect(again.status).toBe(409);
      expect(again.body).toMatchObject({ code: "NAME_CLASH", field: "name" });

      const shown = await call("GET", "/v1/labs/lbapi", ACME);
      expect(shown.status).toBe(200);
      expect(shown.body.state).toBe("creating");
      expect((await call("GET", "/v1/labs/lbapi", GLOBEX)).status).toBe(404);
      expect(((await call("GET", "/v1/labs", ACME)).body as unknown as { name: string }[]).map((l) => l.name)).toEqual([
        "lbapi",
      ]);
      expect((await call("GET", "/v1/labs", GLOBEX)).body).toEqual([]);

      const extended = await call("POST", "/v1/labs/lbapi/extend", ACME, { by: "2h" });
      expect(extended.status, extended.text).toBe(200);
      expect(Date.parse(extended.body.expiresAt as string) - Date.now()).toBeGreaterThan(119 * 60_000);
      const badBy = await call("POST", "/v1/labs/lbapi/extend", ACME, { by: "soon" });
      expect(badBy.status).toBe(400);
      expect(badBy.body).toMatchObject({ code: "INVALID_SPEC", field: "body.by" });
      expect((await call("POST", "/v1/labs/lbapi/extend", GLOBEX, { by: "1h" })).status).toBe(404);
      expect((await call("DELETE", "/v1/labs/lbapi", GLOBEX)).status).toBe(404);

      // Down: the waiting creates are cancelled (nothing was made), so the lab is gone at once.
      const down = await call("DELETE", "/v1/labs/lbapi", ACME);
      expect(down.status, down.text).toBe(202);
      expect(down.body.state).toBe("gone");
      for (const v of vms) expect(await server.fleet.vms.get(v.name)).toBeUndefined();
      expect((await call("DELETE", "/v1/labs/lbapi", ACME)).body.state).toBe("gone");

      const events = await sse(`${server.url}/v1/labs/lbapi/events`, ACME);
      expect(events.every((e) => e.event === "lab")).toBe(true);
      expect(events.filter((e) => e.data.type === "state").map((e) => e.data.state)).toEqual([
        "creating",
        "expiring",
        "gone",
      ]);
      expect(
        (await fetch(`${server.url}/v1/labs/lbapi/events`, { headers: { authorization: `Bearer ${GLOBEX}` } })).status,
      ).toBe(404);
    });
  });

  test("refusals name the field: a bad body, an unknown template, the quota", async ({ redisUrl, prefix }) => {
    await withServer(redisUrl, prefix, async (call) => {
      const bad = await call("POST", "/v1/labs", ACME, {
        name: "lbbad",
        lab: { vms: [{ name: "Web!", template: "x" }] },
      });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ code: "INVALID_SPEC", field: "body.lab.vms.0.name" });
      const badTtl = await call("POST", "/v1/labs", ACME, {
        name: "lbbad",
        lab: { vms: [{ name: "web", template: "lbt-small" }] },
        ttl: "forever",
      });
      expect(badTtl.body).toMatchObject({ code: "INVALID_SPEC", field: "body.ttl" });
      const missing = await call("POST", "/v1/labs", ACME, {
        name: "lbbad",
        lab: {
          vms: [
            { name: "web", template: "lbt-small" },
            { name: "db", template: "lbt-nosuch" },
          ],
        },
      });
      expect(missing.status).toBe(404);
      expect(missing.body).toMatchObject({ code: "NOT_FOUND", field: "lab.vms.1.template" });
      expect((await call("GET", "/v1/labs", ACME)).body).toEqual([]);
      expect((await call("POST", "/v1/labs", ACME, {})).status).toBe(400);
      expect((await call("GET", "/v1/labs", "no-such-token-0123456789")).status).toBe(401);

      // Quota: acme may hold 3 VMs; a lab of 4 fails, naming the VM refused and why.
      const over = await call("POST", "/v1/labs", ACME, {
        name: "lbquota",
        lab: { vms: [{ name: "n", template: "lbt-small", count: 4 }] },
      });
      expect(over.status, over.text).toBe(202);
      expect(over.body.state).toBe("failed");
      expect(over.body.reason).toMatch(/^lbquota-n-\d: QUOTA_EXCEEDED: /);
    });
  });

  test("the OpenAPI document has the lab routes, and is valid", async () => {
    const parsed = (await parseOpenApi(structuredClone(buildOpenApi()) as never)) as {
      paths: Record<string, Record<string, unknown>>;
    };
    expect(Object.keys(parsed.paths)).toEqual(
      expect.arrayContaining(["/v1/labs", "/v1/labs/{name}", "/v1/labs/{name}/extend", "/v1/labs/{name}/events"]),
    );
    expect(Object.keys(parsed.paths["/v1/labs/{name}"] ?? {}).sort()).toEqual(["delete", "get"]);
  });
});
