import { spawn } from "node:child_process";
import path from "node:path";
import type { LeaseView } from "@virtfleet/core";
import { LabKeys, LeaseStore } from "@virtfleet/labs";
import { describe, expect } from "vitest";
import { startApi } from "../../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";

const CLI = path.resolve(import.meta.dirname, "../../dist/main.js");
const MIN = 60_000;
const TOKEN = "acme-token-0123456789abcdef";

/** The built CLI with these variables (and no API unless given); its exit code and output. */
function run(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { VIRTFLEET_API_URL: _api, VIRTFLEET_TOKEN: _token, ...base } = process.env;
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += d;
  });
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  return new Promise((resolve) => child.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

// Each test spawns the CLI a dozen times (~1 s each on a quiet 2-core machine, several under load).
describe("virtfleet lease show / extend / release", { timeout: 90_000 }, () => {
  test("through Redis: show (table and --json), extend from now; bad input names the argument", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const env = { REDIS_URL: redisUrl, VIRTFLEET_PREFIX: prefix };
    const leases = new LeaseStore(redis, new LabKeys(prefix));
    const lease = await leases.create({
      kind: "claim",
      target: "rp-cli-1",
      pool: "ci",
      ttlMs: MIN,
      maxLifetimeMs: 10 * MIN,
    });

    const shown = await run(env, "lease", "show", lease.id, "--json");
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual(lease);
    const table = await run(env, "lease", "show", lease.id);
    expect(table.stdout).toMatch(/ID\s+KIND\s+TARGET\s+POOL\s+EXPIRES/);
    expect(table.stdout).toContain("rp-cli-1");

    const extended = await run(env, "lease", "extend", lease.id, "5m", "--json");
    expect(extended.code, extended.stderr).toBe(0);
    const after = JSON.parse(extended.stdout) as LeaseView;
    expect(Date.parse(after.expiresAt)).toBeGreaterThan(Date.parse(lease.expiresAt));
    expect((await leases.get(lease.id))?.expiresAt).toBe(after.expiresAt);

    const bad = await run(env, "lease", "extend", lease.id, "soon");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/by/);
    const badId = await run(env, "lease", "show", "nope");
    expect(badId.code).toBe(2);
    expect(badId.stderr).toMatch(/id/);
    const missing = await run(env, "lease", "show", "lease-00000000", "--json");
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: "NOT_FOUND" } });
  });

  test("through the API: show, extend, release (the kind's handler runs once)", async ({ redis, redisUrl, prefix }) => {
    const released: string[] = [];
    const api = await startApi(
      redisUrl,
      prefix,
      [{ id: "acme", token: TOKEN, scopes: ["vms:read", "vms:write"], tenant: "acme" }],
      {
        leaseHandlers: {
          claim: {
            async expire(l) {
              released.push(l.id);
            },
          },
        },
      },
    );
    try {
      const env = { VIRTFLEET_API_URL: api.base, VIRTFLEET_TOKEN: TOKEN };
      const leases = new LeaseStore(redis, new LabKeys(prefix));
      const lease = await leases.create({
        kind: "claim",
        target: "rp-cli-2",
        tenant: "acme",
        ttlMs: MIN,
        maxLifetimeMs: 10 * MIN,
      });
      const shown = await run(env, "lease", "show", lease.id, "--json");
      expect(shown.code, shown.stderr).toBe(0);
      expect(JSON.parse(shown.stdout)).toMatchObject({ id: lease.id, target: "rp-cli-2" });
      const before = Date.now();
      const five = await run(env, "lease", "extend", lease.id, "5m", "--json");
      expect(five.code, five.stderr).toBe(0);
      const at = Date.parse((JSON.parse(five.stdout) as LeaseView).expiresAt);
      expect(at).toBeGreaterThanOrEqual(before + 5 * MIN - 1000);
      expect(at).toBeLessThanOrEqual(Date.now() + 5 * MIN);
      const extended = await run(env, "lease", "extend", lease.id, "1h");
      expect(extended.code, extended.stderr).toBe(0);
      // Capped at the maximum lifetime (ten minutes).
      expect(extended.stdout).toContain(lease.maxExpiresAt);
      const released1 = await run(env, "lease", "release", lease.id);
      expect(released1.code, released1.stderr).toBe(0);
      expect(released1.stdout).toContain("released");
      expect(released).toEqual([lease.id]);
      const again = await run(env, "lease", "release", lease.id);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/NOT_FOUND/);
    } finally {
      await api.close();
    }
  });
});
