import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostUp } from "../../../test/fixtures/host-status.js";
import { LocalRedis } from "../../../test/fixtures/redis-server.js";
import { TokenStore } from "./auth.js";
import { METRICS_CACHE_MS } from "./metrics.js";
import { ApiServer, type ApiServerOptions } from "./server.js";

const TOKENS = {
  metrics: "metrics-token-0123456789abcdef",
  reader: "reader-token-0123456789abcdef",
  admin: "admin-token-0123456789abcdef",
};

let local: LocalRedis;
let redis: Redis;
const prefix = `test-${randomUUID()}`;

async function withServer(options: Partial<ApiServerOptions>, body: (server: ApiServer) => Promise<void>) {
  const server = new ApiServer({
    redisUrl: local.url,
    prefix,
    tokens: new TokenStore([
      { id: "prometheus", token: TOKENS.metrics, scopes: ["metrics:read"], tenant: "ops" },
      { id: "reader", token: TOKENS.reader, scopes: ["vms:read", "hosts:read"], tenant: "acme" },
      { id: "admin", token: TOKENS.admin, scopes: ["admin"], tenant: "ops" },
    ]),
    logger: pino({ level: "silent" }),
    port: 0,
    ...options,
  });
  try {
    await server.start();
    await body(server);
  } finally {
    await server.close();
  }
}

const scrape = (url: string, token?: string) =>
  fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });

/** Commands Redis has run so far, by command, from INFO commandstats (the INFO calls included). */
async function commandsRun(): Promise<{ total: number; hkeys: number }> {
  const info = await redis.info("commandstats");
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) total += Number(m[1]);
  return { total, hkeys: Number(/^cmdstat_hkeys:calls=(\d+)/m.exec(info)?.[1] ?? 0) };
}

beforeAll(async () => {
  local = await LocalRedis.start({ appendonly: false });
  redis = new Redis(local.url);
  await withServer({}, async (server) => {
    await hostUp(server.fleet, "as-m1");
    await hostUp(server.fleet, "as-m2");
  });
});

afterAll(async () => {
  redis?.disconnect();
  await local?.stop();
});

describe("/metrics", () => {
  it("needs a token with metrics:read by default: 401 without, 403 with another scope, 200 with it or admin", async () => {
    await withServer({}, async (server) => {
      const none = await scrape(`${server.url}/metrics`);
      expect(none.status).toBe(401);
      expect(await none.json()).toMatchObject({ code: "UNAUTHENTICATED" });
      const wrong = await scrape(`${server.url}/metrics`, TOKENS.reader);
      expect(wrong.status).toBe(403);
      expect(await wrong.json()).toMatchObject({ code: "FORBIDDEN" });
      const ok = await scrape(`${server.url}/metrics`, TOKENS.metrics);
      expect(ok.status).toBe(200);
      expect(await ok.text()).toMatch(/virtfleet_host_up\{host="as-m1"\} 1/);
      expect((await scrape(`${server.url}/metrics`, TOKENS.admin)).status).toBe(200);
    });
  });

  it("with metricsAuth none and a port of its own: served there without a token, and not on the API's port", async () => {
    await withServer({ metricsAuth: "none", metricsPort: 0 }, async (server) => {
      expect(new URL(server.metricsUrl).port).not.toBe(new URL(server.url).port);
      const own = await scrape(server.metricsUrl);
      expect(own.status).toBe(200);
      expect(await own.text()).toMatch(/virtfleet_host_capacity\{host="as-m2",resource="vcpus"\} 4/);
      expect((await scrape(`${server.url}/metrics`, TOKENS.metrics)).status).toBe(404);
      expect((await scrape(server.metricsUrl.replace("/metrics", "/v1/hosts"), TOKENS.reader)).status).toBe(404);
    });
  });

  it("200 scrapes in a row read the hosts from Redis a bounded number of times", async () => {
    await withServer({ metricsAuth: "none" }, async (server) => {
      expect((await scrape(`${server.url}/metrics`)).status).toBe(200);
      const before = await commandsRun();
      const started = Date.now();
      for (let i = 0; i < 200; i++) {
        const res = await scrape(`${server.url}/metrics`);
        expect(res.status).toBe(200);
        await res.text();
      }
      const elapsed = Date.now() - started;
      const after = await commandsRun();
      // Each read of the hosts list is one HKEYS: uncached, every scrape read it four times (800);
      // cached, once per METRICS_CACHE_MS at most.
      expect(after.hkeys - before.hkeys).toBeLessThanOrEqual(Math.ceil(elapsed / METRICS_CACHE_MS) + 1);
      // All commands (the hosts, their queues, the API's own event tail): fewer than one a scrape.
      expect(after.total - before.total).toBeLessThan(200);
    });
  });
});
