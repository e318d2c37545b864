import { spawn } from "node:child_process";
import path from "node:path";
import type { ApiToken } from "@virtfleet/core";
import { LabKeys, TemplateStore } from "@virtfleet/labs";
import { describe, expect } from "vitest";
import { startApi } from "../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

// `virtfleet pool …` through both backends: Redis directly, and the HTTP API (VIRTFLEET_API_URL).
// No worker: a ready VM is seeded as the pool manager would write it; the pool runs its VMs (idle
// run), so a claim needs no host to resume it.

const CLI = path.resolve(import.meta.dirname, "../dist/main.js");
const TOKEN = "acme-token-0123456789abcdef";

function cli(
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

describe("virtfleet pool", () => {
  test("create, ls, claim (--json: exactly vm, host, addresses, leaseId, expiresAt), POOL_EMPTY exit 1, release, rm; on Redis and through the API", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const api = await startApi(redisUrl, prefix, [
      { id: "acme", token: TOKEN, scopes: ["vms:read", "vms:write"], tenant: "acme" },
    ] as ApiToken[]);
    const keys = new LabKeys(prefix);
    try {
      await new TemplateStore(redis, keys).put("po-cli-t", { memoryMiB: 128, vcpus: 1, disks: [{ sizeGiB: 1 }] });
      const backends = {
        redis: { REDIS_URL: redisUrl, VIRTFLEET_PREFIX: prefix },
        api: { VIRTFLEET_API_URL: api.base, VIRTFLEET_TOKEN: TOKEN },
      };
      for (const [kind, env] of Object.entries(backends)) {
        const pool = `po-cli-${kind}`;
        const bad = await cli(env, "pool", "create", pool, "--template", "po-cli-t", "--min-ready", "2", "--max", "x");
        expect(bad.code, kind).toBe(2);
        expect(bad.stderr, kind).toContain("--max");
        const created = await cli(
          env,
          "pool",
          "create",
          pool,
          "--template",
          "po-cli-t",
          "--min-ready",
          "1",
          "--max",
          "2",
          "--idle",
          "run",
          "--claim-ttl",
          "20m",
        );
        expect(created.code, created.stderr).toBe(0);
        const ls = JSON.parse((await cli(env, "pool", "ls", "--json")).stdout) as Record<string, unknown>[];
        expect(
          ls.find((p) => p.name === pool),
          kind,
        ).toMatchObject({
          name: pool,
          template: "po-cli-t",
          minReady: 1,
          max: 2,
          ready: 0,
          starting: 0,
          claimed: 0,
          stale: 0,
          claimTtlMs: 20 * 60_000,
        });

        const empty = await cli(env, "pool", "claim", pool, "--json");
        expect(empty.code, kind).toBe(1);
        expect(JSON.parse(empty.stdout), kind).toMatchObject({ error: { code: "POOL_EMPTY" } });

        const vm = `${pool}-aaaaaaaa`;
        await redis.hset(keys.poolVm(pool, vm), {
          vm,
          host: "h1",
          addresses: JSON.stringify(["127.0.0.5"]),
          templateVersion: "1",
          jobId: "create-x",
          createdAt: String(Date.now()),
          readyAt: String(Date.now()),
        });
        await redis.zadd(keys.poolReady(pool), Date.now(), vm);
        const claim = await cli(env, "pool", "claim", pool, "--ttl", "5m", "--json");
        expect(claim.code, claim.stderr).toBe(0);
        const answer = JSON.parse(claim.stdout) as Record<string, unknown>;
        expect(Object.keys(answer).sort()).toEqual(["addresses", "expiresAt", "host", "leaseId", "vm"]);
        expect(answer).toMatchObject({ vm, host: "h1", addresses: ["127.0.0.5"] });

        const released = await cli(env, "pool", "release", vm);
        expect(released.code, released.stderr).toBe(0);
        expect(released.stdout).toContain(`${vm}\treleased\tpool ${pool}`);
        expect(await redis.hlen(keys.poolClaimed(pool))).toBe(0);
        const again = await cli(env, "pool", "release", vm);
        expect(again.code, kind).toBe(1);
        expect(again.stderr, kind).toContain("NOT_FOUND");
        const rm = await cli(env, "pool", "rm", pool);
        expect(rm.code, rm.stderr).toBe(0);
        expect((await cli(env, "pool", "show", pool)).code, kind).toBe(1);
      }
    } finally {
      await api.close();
    }
    // Two backends × about a dozen CLI processes each: ~15 s on a quiet 2-core machine.
  }, 90_000);
});
