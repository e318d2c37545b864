import { LabKeys, TemplateStore } from "@virtfleet/labs";
import { describe, expect } from "vitest";
import { call, startApi, until } from "../../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";

const ACME = "tp-acme-token-0123456789abcdef";
const ACME_RO = "tp-acme-ro-token-0123456789abcdef";
const BLUE = "tp-blue-token-0123456789abcdef";
const ADMIN = "tp-admin-token-0123456789abcdef";

const web = {
  memoryMiB: 512,
  vcpus: 1,
  disks: [{ sizeGiB: 4, backing: "debian12.qcow2" }],
  install: { method: "import" },
  guestReady: { strategy: "agent" },
};

const TOKENS = [
  { id: "acme", token: ACME, scopes: ["vms:read", "vms:write"] as const, tenant: "acme", networks: ["br-lab"] },
  { id: "acme-ro", token: ACME_RO, scopes: ["vms:read"] as const, tenant: "acme" },
  { id: "blue", token: BLUE, scopes: ["vms:read", "vms:write"] as const, tenant: "blue" },
  { id: "admin", token: ADMIN, scopes: ["admin"] as const, tenant: "ops" },
].map((t) => ({ ...t, scopes: [...t.scopes] }));

describe("API: /v1/templates", () => {
  test("PUT stores a version (same spec: same version, changed: false); GET lists and shows; DELETE removes", async ({
    redisUrl,
    prefix,
  }) => {
    const api = await startApi(redisUrl, prefix, TOKENS);
    try {
      const first = await call(api.base, "PUT", "/v1/templates/web", ACME, web);
      expect(first).toMatchObject({
        status: 200,
        body: { name: "web", version: 1, changed: true, tenant: "acme", spec: { memoryMiB: 512 } },
      });
      expect(await call(api.base, "PUT", "/v1/templates/web", ACME, web)).toMatchObject({
        status: 200,
        body: { version: 1, changed: false },
      });
      expect(await call(api.base, "PUT", "/v1/templates/web", ACME, { ...web, vcpus: 2 })).toMatchObject({
        status: 200,
        body: { version: 2, changed: true, spec: { vcpus: 2 } },
      });

      const listed = await call(api.base, "GET", "/v1/templates", ACME_RO);
      expect(listed.status).toBe(200);
      expect(listed.body).toEqual([expect.objectContaining({ name: "web", version: 2 })]);
      expect(await call(api.base, "GET", "/v1/templates/web", ACME_RO)).toMatchObject({
        status: 200,
        body: { name: "web", version: 2, spec: { vcpus: 2, guestReady: { strategy: "agent" } } },
      });
      expect(await call(api.base, "GET", "/v1/templates/nope", ACME_RO)).toMatchObject({
        status: 404,
        body: { code: "NOT_FOUND", field: "name" },
      });

      // A read-only token may read but not write.
      expect(await call(api.base, "PUT", "/v1/templates/web", ACME_RO, web)).toMatchObject({
        status: 403,
        body: { code: "FORBIDDEN" },
      });
      expect((await call(api.base, "DELETE", "/v1/templates/web", ACME_RO)).status).toBe(403);

      expect(await call(api.base, "DELETE", "/v1/templates/web", ACME)).toMatchObject({
        status: 200,
        body: { name: "web", removed: true },
      });
      expect((await call(api.base, "GET", "/v1/templates/web", ACME)).status).toBe(404);
      expect(await call(api.base, "DELETE", "/v1/templates/web", ACME)).toMatchObject({
        status: 404,
        body: { code: "NOT_FOUND" },
      });
    } finally {
      await api.close();
    }
  });

  test("a bad spec or name is 400 INVALID_SPEC naming the field, and nothing is stored", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const api = await startApi(redisUrl, prefix, TOKENS);
    const keys = new LabKeys(prefix);
    try {
      for (const [path, body, field] of [
        ["/v1/templates/web", { ...web, memoryMiB: 8 }, "body.memoryMiB"],
        ["/v1/templates/web", { ...web, name: "web" }, "body"],
        ["/v1/templates/web", { ...web, disks: [] }, "body.disks"],
        ["/v1/templates/web", { ...web, guestReady: { strategy: "telepathy" } }, "body.guestReady.strategy"],
        ["/v1/templates/Web_1", web, "name"],
      ] as const) {
        expect(await call(api.base, "PUT", path, ACME, body), JSON.stringify(body)).toMatchObject({
          status: 400,
          body: { code: "INVALID_SPEC", field },
        });
      }
      expect(await redis.exists(keys.template("web"), keys.template("Web_1"), keys.templates())).toBe(0);
      expect(await call(api.base, "GET", "/v1/templates", ACME)).toMatchObject({ status: 200, body: [] });
    } finally {
      await api.close();
    }
  });

  test("a template's networks are checked against the token's like a create's", async ({ redisUrl, prefix }) => {
    const api = await startApi(redisUrl, prefix, TOKENS);
    try {
      const bridged = { ...web, networks: [{ type: "bridge", bridge: "br-lab" }] };
      expect((await call(api.base, "PUT", "/v1/templates/bridged", ACME, bridged)).status).toBe(200);
      expect(await call(api.base, "PUT", "/v1/templates/bridged2", BLUE, bridged)).toMatchObject({
        status: 403,
        body: { code: "FORBIDDEN", field: "body.networks.0" },
      });
      expect((await call(api.base, "GET", "/v1/templates/bridged2", ADMIN)).status).toBe(404);
    } finally {
      await api.close();
    }
  });

  test("tenants see and change only their own; an admin sees all; rm refused while a pool uses it", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const api = await startApi(redisUrl, prefix, TOKENS);
    const keys = new LabKeys(prefix);
    try {
      expect((await call(api.base, "PUT", "/v1/templates/acme-web", ACME, web)).status).toBe(200);
      expect((await call(api.base, "PUT", "/v1/templates/blue-web", BLUE, web)).status).toBe(200);

      expect((await call(api.base, "GET", "/v1/templates", BLUE)).body).toEqual([
        expect.objectContaining({ name: "blue-web", tenant: "blue" }),
      ]);
      expect(await call(api.base, "GET", "/v1/templates/acme-web", BLUE)).toMatchObject({
        status: 404,
        body: { code: "NOT_FOUND" },
      });
      // Blue can neither overwrite nor remove acme's.
      expect(await call(api.base, "PUT", "/v1/templates/acme-web", BLUE, { ...web, vcpus: 8 })).toMatchObject({
        status: 409,
        body: { code: "NAME_CLASH", field: "name" },
      });
      expect((await call(api.base, "DELETE", "/v1/templates/acme-web", BLUE)).status).toBe(404);
      expect(await call(api.base, "GET", "/v1/templates/acme-web", ACME)).toMatchObject({
        body: { version: 1, spec: { vcpus: 1 } },
      });

      const all = await call(api.base, "GET", "/v1/templates", ADMIN);
      expect((all.body as unknown as { name: string }[]).map((t) => t.name)).toEqual(["acme-web", "blue-web"]);

      // An operator's shared template (no tenant, stored straight in Redis): every tenant reads it,
      // none may change or remove it.
      await new TemplateStore(redis, keys).put("shared", web);
      const blueSees = (await call(api.base, "GET", "/v1/templates", BLUE)).body as unknown as {
        name: string;
        tenant?: string;
      }[];
      expect(blueSees.map((t) => [t.name, t.tenant])).toEqual([
        ["blue-web", "blue"],
        ["shared", undefined],
      ]);
      expect((await call(api.base, "GET", "/v1/templates/shared", ACME)).status).toBe(200);
      expect((await call(api.base, "PUT", "/v1/templates/shared", BLUE, { ...web, vcpus: 2 })).status).toBe(409);
      expect(await call(api.base, "DELETE", "/v1/templates/shared", BLUE)).toMatchObject({
        status: 403,
        body: { code: "FORBIDDEN", field: "name" },
      });
      expect((await call(api.base, "DELETE", "/v1/templates/shared", ADMIN)).status).toBe(200);

      // A pool makes VMs from acme-web: it stays until the pool is gone.
      await redis.sadd(keys.pools(), "ci");
      await redis.hset(keys.pool("ci"), { name: "ci", template: "acme-web", tenant: "acme" });
      expect(await call(api.base, "DELETE", "/v1/templates/acme-web", ACME)).toMatchObject({
        status: 409,
        body: { code: "NAME_CLASH", field: "name" },
      });
      await redis.multi().del(keys.pool("ci")).srem(keys.pools(), "ci").exec();
      expect((await call(api.base, "DELETE", "/v1/templates/acme-web", ADMIN)).status).toBe(200);
      expect((await call(api.base, "GET", "/v1/templates", ADMIN)).body).toEqual([
        expect.objectContaining({ name: "blue-web" }),
      ]);
    } finally {
      await api.close();
    }
  });

  test("PUT and DELETE write audit lines and honour Idempotency-Key; OpenAPI documents the routes", async ({
    redisUrl,
    prefix,
  }) => {
    const api = await startApi(redisUrl, prefix, TOKENS);
    try {
      const put = (body: unknown) =>
        fetch(`${api.base}/v1/templates/web`, {
          method: "PUT",
          headers: { authorization: `Bearer ${ACME}`, "content-type": "application/json", "idempotency-key": "tp-k1" },
          body: JSON.stringify(body),
        });
      expect((await put(web)).status).toBe(200);
      const replay = await put(web);
      expect(replay.headers.get("idempotent-replayed")).toBe("true");
      expect(await replay.json()).toMatchObject({ version: 1, changed: true });
      expect((await put({ ...web, vcpus: 3 })).status).toBe(409); // the same key for another body
      expect((await call(api.base, "DELETE", "/v1/templates/web", ACME)).status).toBe(200);
      expect((await call(api.base, "PUT", "/v1/templates/web", ACME_RO, web)).status).toBe(403);

      const audit = () =>
        api.logs
          .flatMap((chunk) => chunk.split("\n"))
          .filter((l) => l.includes('"audit":true'))
          .map((l) => JSON.parse(l) as { action: string; outcome: number; tokenId?: string; code?: string });
      expect(await until(() => audit().length >= 5)).toBe(true);
      expect(audit().map((a) => [a.action, a.outcome, a.tokenId])).toEqual([
        ["PUT /v1/templates/:name", 200, "acme"],
        ["PUT /v1/templates/:name", 200, "acme"],
        ["PUT /v1/templates/:name", 409, "acme"],
        ["DELETE /v1/templates/:name", 200, "acme"],
        ["PUT /v1/templates/:name", 403, "acme-ro"],
      ]);

      const doc = (await (await fetch(`${api.base}/v1/openapi.json`)).json()) as {
        paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>;
      };
      const one = doc.paths["/v1/templates/{name}"];
      expect(Object.keys(one ?? {}).sort()).toEqual(["delete", "get", "put"]);
      expect(JSON.stringify(one?.put?.requestBody)).toContain("memoryMiB");
      expect(JSON.stringify(one?.put?.responses["200"])).toContain("changed");
      expect(Object.keys(doc.paths["/v1/templates"] ?? {})).toEqual(["get"]);
    } finally {
      await api.close();
    }
  });
});
