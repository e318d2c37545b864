import type { LeaseView } from "@virtfleet/core";
import { FleetClient } from "@virtfleet/fleet";
import { LabKeys, LeaseStore, Reaper } from "@virtfleet/labs";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { call, startApi } from "../../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";

const TOKENS: { id: string; token: string; scopes: ("vms:read" | "vms:write" | "metrics:read")[]; tenant: string }[] = [
  { id: "acme-w", token: "acme-token-0123456789abcdef", scopes: ["vms:read", "vms:write"], tenant: "acme" },
  { id: "acme-r", token: "acme-read-0123456789abcdef", scopes: ["vms:read"], tenant: "acme" },
  { id: "other", token: "other-token-0123456789abcdef", scopes: ["vms:read", "vms:write"], tenant: "other" },
  { id: "prom", token: "prom-token-0123456789abcdef", scopes: ["metrics:read"], tenant: "ops" },
];
const [ACME, ACME_READ, OTHER, PROM] = TOKENS.map((t) => t.token) as [string, string, string, string];
const MIN = 60_000;

describe("/v1/leases against a real API server and Redis", () => {
  test("show, extend, release; another tenant gets NOT_FOUND; bad input names the field", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const released: [string, string][] = [];
    const api = await startApi(redisUrl, prefix, [...TOKENS], {
      leaseHandlers: {
        claim: {
          async expire(l: LeaseView, reason) {
            released.push([l.id, reason]);
          },
        },
      },
    });
    try {
      const leases = new LeaseStore(redis, new LabKeys(prefix));
      const lease = await leases.create({
        kind: "claim",
        target: "rp-api-1",
        pool: "p",
        tenant: "acme",
        ttlMs: MIN,
        maxLifetimeMs: 10 * MIN,
      });

      const shown = await call(api.base, "GET", `/v1/leases/${lease.id}`, ACME_READ);
      expect(shown.status).toBe(200);
      expect(shown.body).toMatchObject({ id: lease.id, kind: "claim", target: "rp-api-1", pool: "p", tenant: "acme" });
      expect((await call(api.base, "GET", `/v1/leases/${lease.id}`, OTHER)).body).toMatchObject({ code: "NOT_FOUND" });
      expect((await call(api.base, "GET", "/v1/leases/nope", ACME)).body).toMatchObject({
        code: "INVALID_SPEC",
        field: "id",
      });

      // Extend: from now, capped at the maximum lifetime; a read-only token may not.
      expect((await call(api.base, "POST", `/v1/leases/${lease.id}/extend`, ACME_READ, { by: "1h" })).status).toBe(403);
      const bad = await call(api.base, "POST", `/v1/leases/${lease.id}/extend`, ACME, { by: "soon" });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ code: "INVALID_SPEC", field: "body.by" });
      const other = await call(api.base, "POST", `/v1/leases/${lease.id}/extend`, OTHER, { by: "1h" });
      expect(other.body).toMatchObject({ code: "NOT_FOUND" });
      const before = Date.now();
      const extended = await call(api.base, "POST", `/v1/leases/${lease.id}/extend`, ACME, { by: "5m" });
      expect(extended.status).toBe(200);
      const at = Date.parse(String(extended.body.expiresAt));
      expect(at).toBeGreaterThanOrEqual(before + 5 * MIN - 1000);
      expect(at).toBeLessThanOrEqual(Date.now() + 5 * MIN);
      const capped = await call(api.base, "POST", `/v1/leases/${lease.id}/extend`, ACME, { by: "1d" });
      expect(capped.body.expiresAt).toBe(lease.maxExpiresAt);

      // Release: another tenant cannot; the owner can, once.
      expect((await call(api.base, "DELETE", `/v1/leases/${lease.id}`, OTHER)).body).toMatchObject({
        code: "NOT_FOUND",
      });
      expect(released).toEqual([]);
      const gone = await call(api.base, "DELETE", `/v1/leases/${lease.id}`, ACME);
      expect(gone.status).toBe(200);
      expect(gone.body).toMatchObject({ id: lease.id });
      expect(released).toEqual([[lease.id, "released"]]);
      expect((await call(api.base, "GET", `/v1/leases/${lease.id}`, ACME)).status).toBe(404);
      expect((await call(api.base, "DELETE", `/v1/leases/${lease.id}`, ACME)).status).toBe(404);

      // The routes are in the OpenAPI document.
      const doc = (await (await fetch(`${api.base}/v1/openapi.json`)).json()) as { paths: Record<string, unknown> };
      expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/leases/{id}", "/v1/leases/{id}/extend"]));
      // Each release is an audit line.
      expect(api.logs.join("")).toMatch(/"action":"lease.released"/);
    } finally {
      await api.close();
    }
  });

  test("/metrics counts expiries by kind (once each, whichever reaper took them)", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const api = await startApi(redisUrl, prefix, [...TOKENS], { metricsCacheMs: 0 });
    const fleet = new FleetClient({ redisUrl, prefix });
    try {
      const keys = new LabKeys(prefix);
      const leases = new LeaseStore(redis, keys);
      const past = Date.now() - 10_000;
      for (let i = 0; i < 3; i++)
        await leases.create({ kind: "claim", target: `rp-m-${i}`, ttlMs: 1, maxLifetimeMs: MIN }, past);
      await leases.create({ kind: "lab", target: "rp-lab", ttlMs: 1, maxLifetimeMs: MIN }, past);
      const metric = async () => {
        const text = await (
          await fetch(`${api.base}/metrics`, { headers: { authorization: `Bearer ${PROM}` } })
        ).text();
        return text.split("\n").filter((l) => l.startsWith("virtfleet_lease_expiries_total{"));
      };
      expect(await metric()).toEqual([
        'virtfleet_lease_expiries_total{kind="claim"} 0',
        'virtfleet_lease_expiries_total{kind="lab"} 0',
      ]);
      const deps = { redis, keys, fleet, leases, logger: pino({ level: "silent" }) };
      const ok = { async expire() {} };
      const handlers = { claim: ok, lab: ok };
      await Promise.all([1, 2, 3].map(() => new Reaper({ deps, handlers, orphanSweepMs: 0 }).tick()));
      expect(await metric()).toEqual([
        'virtfleet_lease_expiries_total{kind="claim"} 3',
        'virtfleet_lease_expiries_total{kind="lab"} 1',
      ]);
    } finally {
      await fleet.close();
      await api.close();
    }
  });
});
