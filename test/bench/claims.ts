/**
 * 7. Warm pool claims against create-to-ready, through the HTTP API, same template, same run.
 * Claim latency is from the API request (`POST /v1/pools/{name}/claims`) to its answer, with ready
 * (paused) VMs waiting: the VM is resumed and its lease written before the answer. The baseline is
 * `POST /v1/vms` with the template's spec to its job's `done` (the guest's ready line), one at a time.
 */
import { spawn } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { FleetClient } from "@virtfleet/fleet";
import { LabKeys, TemplateStore } from "@virtfleet/labs";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { pino } from "pino";
import type { LocalRedis } from "../fixtures/redis-server.js";

const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 20);
const CREATES = Number(process.env.BENCH_CREATES ?? 5);
const TOKEN = "bench-claims-token-0123456789";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

export interface ClaimFigures {
  claimP50Ms: number;
  claimP99Ms: number;
  createToReadyP50Ms: number;
  ratioClaimToCreate: number;
  claims: number;
  creates: number;
}

export async function claimLatency(
  redis: LocalRedis,
  opts: { repo: string; root: string; images: string; prefix: string },
): Promise<ClaimFigures> {
  const { repo, root, images, prefix } = opts;
  const storage = path.join(root, "vfbench-claims");
  await mkdir(storage, { recursive: true, mode: 0o755 });
  const worker = spawn(process.execPath, [path.join(repo, "apps/worker/dist/main.js")], {
    env: {
      ...process.env,
      REDIS_URL: redis.url,
      VIRTFLEET_PREFIX: prefix,
      VIRTFLEET_HOST_ID: "bench-claims",
      VIRTFLEET_STORAGE_DIR: storage,
      VIRTFLEET_IMAGE_DIR: images,
      VIRTFLEET_VIRT_TYPE: "qemu",
      VIRTFLEET_CONCURRENCY: "4",
      LOG_LEVEL: "warn",
    },
    stdio: "ignore",
  });
  const api = new ApiServer({
    redisUrl: redis.url,
    prefix,
    tokens: new TokenStore([{ id: "bench", token: TOKEN, scopes: ["admin"], tenant: "bench" }]),
    logger: pino({ level: "silent" }),
    port: 0,
  });
  await api.start();
  const fleet = new FleetClient({ redisUrl: redis.url, prefix });
  const call = async (
    method: string,
    url: string,
    body?: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> | undefined }> => {
    const response = await fetch(`${api.url}${url}`, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: text === "" ? undefined : (JSON.parse(text) as Record<string, unknown>) };
  };
  const spec = {
    memoryMiB: 192,
    vcpus: 1,
    disks: [{ sizeGiB: 1, backing: "tiny" }],
    install: { method: "kernel", kernel: "tiny", initrd: "tiny", kernelArgs: "console=ttyS0 quiet" },
    networks: [],
    virtType: "qemu",
  } as const;
  const pool = "benchpool";
  try {
    while (!(await fleet.hosts.get("bench-claims"))?.up) await sleep(100);
    const keys = new LabKeys(prefix);
    await new TemplateStore(fleet.connect(), keys).put("bench-tiny", { ...spec, guestReady: { strategy: "console" } });

    // Baseline: create to ready of the same spec, one at a time.
    const creates: number[] = [];
    for (let i = 0; i < CREATES; i++) {
      const name = `vfb-c-${i + 1}`;
      const t0 = performance.now();
      const accepted = await call("POST", "/v1/vms", { spec: { ...spec, name }, guestReady: { strategy: "console" } });
      if (accepted.status !== 202)
        throw new Error(`create ${name}: ${accepted.status} ${JSON.stringify(accepted.json)}`);
      const job = fleet.job(String(accepted.json?.jobId));
      const end = await job.wait();
      if (end.phase !== "done") throw new Error(`create ${name}: ${end.phase}`);
      creates.push(performance.now() - t0);
      await (await fleet.destroyVm(name)).wait();
    }

    // Claims: a paused pool of 4 ready; each claim released at once (the pool refills).
    const made = await call("POST", "/v1/pools", {
      name: pool,
      template: "bench-tiny",
      minReady: 4,
      max: 8,
      refillConcurrency: 2,
      idle: "pause",
    });
    if (made.status !== 201) throw new Error(`pool create: ${made.status} ${JSON.stringify(made.json)}`);
    const claims: number[] = [];
    const deadline = Date.now() + 20 * 60_000;
    while (claims.length < CLAIMS) {
      if (Date.now() > deadline) throw new Error(`claims: only ${claims.length} in 20 min`);
      const view = await call("GET", `/v1/pools/${pool}`);
      if (Number(view.json?.ready ?? 0) < 1) {
        await sleep(200);
        continue;
      }
      const t0 = performance.now();
      const claim = await call("POST", `/v1/pools/${pool}/claims`, { ttl: "10m" });
      const ms = performance.now() - t0;
      if (claim.status !== 201) throw new Error(`claim: ${claim.status} ${JSON.stringify(claim.json)}`);
      claims.push(ms);
      await call("DELETE", `/v1/pools/${pool}/claims/${String(claim.json?.vm)}`);
    }
    const c = [...claims].sort((a, b) => a - b);
    const r = [...creates].sort((a, b) => a - b);
    const createP50 = percentile(r, 50);
    return {
      claimP50Ms: round(percentile(c, 50), 1),
      claimP99Ms: round(percentile(c, 99), 1),
      createToReadyP50Ms: round(createP50, 0),
      ratioClaimToCreate: round(percentile(c, 50) / createP50, 4),
      claims: c.length,
      creates: r.length,
    };
  } finally {
    await call("DELETE", `/v1/pools/${pool}`).catch(() => undefined);
    for (let i = 0; i < 600; i++) {
      const vms = await fleet.vms.list().catch(() => []);
      if (!vms.some((v) => v.name.startsWith(`${pool}-`))) break;
      await sleep(500);
    }
    await fleet.close();
    await api.close();
    worker.kill("SIGTERM");
    await new Promise((r) => worker.once("exit", r));
    await rm(storage, { recursive: true, force: true });
  }
}
