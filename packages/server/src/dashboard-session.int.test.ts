import { CapacityLedger } from "@virtfleet/fleet";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { hostStatus } from "../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";
import { TokenStore } from "./auth.js";
import { ApiServer } from "./server.js";

const ACME = "acme-token-0123456789abcdef";
const ACME_RO = "acme-read-0123456789abcdef";
const GLOBEX = "globex-token-0123456789abcdef";
const UI = { "x-virtfleet-ui": "1" };

async function withServer(redisUrl: string, prefix: string, run: (base: string) => Promise<void>): Promise<void> {
  const tokens = new TokenStore([
    { id: "acme", token: ACME, scopes: ["vms:read", "vms:write"], tenant: "acme" },
    { id: "acme-ro", token: ACME_RO, scopes: ["vms:read"], tenant: "acme" },
    { id: "globex", token: GLOBEX, scopes: ["vms:read", "vms:write"], tenant: "globex" },
  ]);
  const server = new ApiServer({ redisUrl, prefix, tokens, logger: pino({ level: "silent" }), port: 0 });
  try {
    await server.start();
    const redis = server.fleet.connect();
    await new CapacityLedger(redis, server.fleet.keys).setCapacity("du-host", 65536, 64, 1000);
    redis.disconnect();
    await server.fleet.hosts.heartbeat(hostStatus("du-host"), 60_000);
    await run(server.url);
  } finally {
    await server.close();
  }
}

async function req(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    redirect: "manual",
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: (text.startsWith("{") ? JSON.parse(text) : {}) as Record<string, unknown>,
  };
}

async function signIn(base: string, token: string): Promise<string> {
  const r = await req(base, "POST", "/ui/session", UI, { token });
  expect(r.status).toBe(201);
  const cookie = r.headers.get("set-cookie") ?? "";
  return cookie.split(";")[0] as string;
}

const spec = (name: string) => ({ name, memoryMiB: 128, vcpus: 1, disks: [{ sizeGiB: 1 }] });

describe("dashboard sessions", () => {
  test("sign-in sets an HttpOnly, SameSite=Strict, Path=/ cookie holding a random id, not the token; Redis keeps no token in clear", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    await withServer(redisUrl, prefix, async (base) => {
      const r = await req(base, "POST", "/ui/session", UI, { token: ACME });
      expect(r.status).toBe(201);
      expect(r.body).toEqual({ tokenId: "acme", tenant: "acme", scopes: ["vms:read", "vms:write"] });
      const cookie = r.headers.get("set-cookie") ?? "";
      expect(cookie).toMatch(/^virtfleet_session=[A-Za-z0-9_-]{43};/);
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Strict/);
      expect(cookie).toMatch(/Path=\//);
      expect(cookie).not.toMatch(/Secure/); // plain http on loopback
      expect(cookie).not.toContain(ACME);
      const keys = await redis.keys(`${prefix}:ui-session:*`);
      expect(keys).toHaveLength(1);
      expect(await redis.get(keys[0] as string)).not.toContain(ACME);
      expect(await redis.ttl(keys[0] as string)).toBeGreaterThan(0);
      // The session answers who is signed in.
      const me = await req(base, "GET", "/ui/session", { cookie: cookie.split(";")[0] as string });
      expect(me.body.tenant).toBe("acme");
    });
  });

  test("a wrong token gets 401 UNAUTHENTICATED naming the field and no cookie; a bad body 400; no CSRF header 403", async ({
    redisUrl,
    prefix,
  }) => {
    await withServer(redisUrl, prefix, async (base) => {
      const wrong = await req(base, "POST", "/ui/session", UI, { token: "nope-0123456789" });
      expect(wrong.status).toBe(401);
      expect(wrong.body.code).toBe("UNAUTHENTICATED");
      expect(wrong.headers.get("set-cookie")).toBeNull();
      const bad = await req(base, "POST", "/ui/session", UI, { token: 42 });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).toContain("token");
      const noHeader = await req(base, "POST", "/ui/session", {}, { token: ACME });
      expect(noHeader.status).toBe(403);
      expect(noHeader.headers.get("set-cookie")).toBeNull();
    });
  });

  test("the cookie authenticates /v1 calls; changes without X-Virtfleet-UI: 1 get 403 FORBIDDEN and do nothing", async ({
    redisUrl,
    prefix,
  }) => {
    await withServer(redisUrl, prefix, async (base) => {
      const cookie = await signIn(base, ACME);
      expect((await req(base, "GET", "/v1/vms", { cookie })).status).toBe(200);
      const csrf = await req(base, "POST", "/v1/vms", { cookie }, { spec: spec("du-csrf") });
      expect(csrf.status).toBe(403);
      expect(csrf.body.code).toBe("FORBIDDEN");
      expect((await req(base, "GET", "/v1/vms/du-csrf", { cookie })).status).toBe(404);
      const ok = await req(base, "POST", "/v1/vms", { cookie, ...UI }, { spec: spec("du-ok") });
      expect(ok.status).toBe(202);
      // A read-only token's session has exactly its scopes.
      const ro = await signIn(base, ACME_RO);
      const denied = await req(base, "DELETE", "/v1/vms/du-ok", { cookie: ro, ...UI });
      expect(denied.status).toBe(403);
      expect(JSON.stringify(denied.body)).toContain("vms:write");
    });
  });

  test("a signed-out cookie is refused; so is an unknown one", async ({ redisUrl, prefix }) => {
    await withServer(redisUrl, prefix, async (base) => {
      const cookie = await signIn(base, ACME);
      expect((await req(base, "DELETE", "/ui/session", { cookie })).status).toBe(403); // CSRF header needed
      expect((await req(base, "GET", "/v1/vms", { cookie })).status).toBe(200);
      const out = await req(base, "DELETE", "/ui/session", { cookie, ...UI });
      expect(out.status).toBe(200);
      expect(out.headers.get("set-cookie")).toMatch(/virtfleet_session=;/);
      expect((await req(base, "GET", "/v1/vms", { cookie })).status).toBe(401);
      expect((await req(base, "GET", "/ui/session", { cookie })).status).toBe(401);
      const forged = `virtfleet_session=${"A".repeat(43)}`;
      expect((await req(base, "GET", "/v1/vms", { cookie: forged })).status).toBe(401);
    });
  });

  test("tenant isolation through the cookie: globex's session never sees acme's VMs", async ({ redisUrl, prefix }) => {
    await withServer(redisUrl, prefix, async (base) => {
      const acme = await signIn(base, ACME);
      const globex = await signIn(base, GLOBEX);
      expect((await req(base, "POST", "/v1/vms", { cookie: acme, ...UI }, { spec: spec("du-acme") })).status).toBe(202);
      const list = await fetch(`${base}/v1/vms`, { headers: { cookie: globex } }).then((r) => r.json());
      expect(list).toEqual([]);
      expect((await req(base, "GET", "/v1/vms/du-acme", { cookie: globex })).status).toBe(404);
      expect((await req(base, "DELETE", "/v1/vms/du-acme", { cookie: globex, ...UI })).status).toBe(404);
      const mine = await fetch(`${base}/v1/vms`, { headers: { cookie: acme } }).then((r) => r.json());
      expect((mine as { name: string }[]).map((v) => v.name)).toEqual(["du-acme"]);
    });
  });

  test("the page and its modules are served from this host; the create form's check is the API's own schema", async ({
    redisUrl,
    prefix,
  }) => {
    await withServer(redisUrl, prefix, async (base) => {
      const page = await fetch(`${base}/ui/`);
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(page.headers.get("content-security-policy")).toContain("default-src 'self'");
      expect(html).not.toMatch(/https?:\/\//);
      expect((await fetch(`${base}/ui/vendor/preact.js`)).status).toBe(200);
      expect((await fetch(`${base}/ui/vendor/../../package.json`)).status).toBe(404);
      const schema = (await fetch(`${base}/ui/schema/create-vm.json`).then((r) => r.json())) as {
        properties: { spec: { properties: { vcpus: { minimum: number; maximum: number } } } };
      };
      expect(schema.properties.spec.properties.vcpus).toMatchObject({ minimum: 1, maximum: 256 });
      const cookie = await signIn(base, ACME);
      const bad = await req(
        base,
        "POST",
        "/ui/validate/create-vm",
        { cookie, ...UI },
        { spec: { ...spec("x"), vcpus: 0 } },
      );
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).toContain("spec.vcpus");
      const good = await req(base, "POST", "/ui/validate/create-vm", { cookie, ...UI }, { spec: spec("du-good") });
      expect(good.status).toBe(200);
    });
  });
});
