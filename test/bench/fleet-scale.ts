/**
 * Fleet scale: simulated hosts (no worker, no subprocess) registered as a worker registers them
 * (heartbeat with its status, capacity in the ledger), then creates through FleetClient.createVms in
 * windows. Measures Redis CPU per create at 1,000 hosts against 4 hosts in the same run, checks the
 * ledger for overcommit afterwards, and times the API accepting one 1,000-VM batch.
 */
import { randomUUID } from "node:crypto";
import { FleetClient } from "@virtfleet/fleet";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { Redis } from "ioredis";
import { pino } from "pino";
import { hostStatus } from "../fixtures/host-status.js";
import { emptyRedis, median, round, table } from "./measure.js";

const CREATES = Number(process.env.BENCH_FLEET_CREATES ?? 10_000);
const BIG = Number(process.env.BENCH_FLEET_HOSTS ?? 1000);
const SMALL = 4;
/** Room for this many more VMs than the creates, spread over the hosts: 10,000 fill 12,000 slots. */
const SLOTS = Math.ceil(CREATES * 1.2);
const WINDOW = 500;
const BATCH = 1000;
const API_RUNS = 3;
/** Rounds of the two sizes (BENCH_ROUNDS, as the control plane's). */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const VM = { memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] };
const TOKEN = "bench-token-0123456789abcdef";

interface Scale {
  hosts: number;
  creates: number;
  admitted: number;
  refused: number;
  seconds: number;
  redisCpuS: number;
  nodeCpuS: number;
  perCreateRedisUs: number;
  perCreateScriptUs: number;
  /** Hosts whose claimed memory, vCPUs or disk exceed their capacity (must be 0). */
  overcommitted: number;
  /** Room claims held in the ledger, over all hosts (must equal `admitted`). */
  claims: number;
}

/** Registers `n` hosts, each with room for `perHost` VMs, as their workers would. */
async function registerHosts(client: FleetClient, n: number, perHost: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `bench-h${i}`);
  const memory = perHost * VM.memoryMiB;
  const vcpus = perHost * 2;
  const disk = perHost * 2;
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      ids.slice(i, i + 100).map(async (id) => {
        await client.vms.ledger.setCapacity(id, memory, vcpus, disk);
        await client.hosts.heartbeat(
          hostStatus(id, {
            memoryMiB: { total: memory, capacity: memory },
            vcpus: { total: vcpus, capacity: vcpus },
            diskFreeGiB: disk,
          }),
          3_600_000,
        );
      }),
    );
  }
  return ids;
}

/** Runs `fn` over `items`, `width` at a time. */
async function inChunks<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return out;
}

/** Redis's CPU seconds so far and the microseconds it spent in scripts (one INFO for both). */
async function redisCounters(redis: Redis): Promise<{ cpuS: number; scriptUs: number }> {
  const info = await redis.info("cpu", "commandstats");
  const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  const scriptUs = [...info.matchAll(/cmdstat_(?:eval|evalsha|eval_ro|evalsha_ro):calls=\d+,usec=(\d+)/g)].reduce(
    (t, [, us]) => t + Number(us),
    0,
  );
  return { cpuS: field("used_cpu_user") + field("used_cpu_sys"), scriptUs };
}

interface Fleet {
  hosts: number;
  client: FleetClient;
  ids: string[];
  admitted: number;
  seconds: number;
  redisCpuS: number;
  nodeCpuS: number;
  scriptUs: number;
}

/**
 * CREATES creates over SMALL hosts and CREATES over BIG hosts, their windows interleaved (small,
 * big, big, small, ...: each size goes first every other window), each window's Redis CPU counted to
 * its size. This machine's speed moves by up to 2× within seconds; two sizes measured one after the
 * other (as before 2026-12-01) took that drift into their ratio (one round's ratio ±0.3), windows
 * ~50 ms apart share it. Then each fleet's ledger is checked for overcommit.
 */
async function scalePair(redisUrl: string): Promise<[Scale, Scale]> {
  const counters = new Redis(redisUrl);
  const fleets: Fleet[] = [];
  try {
    for (const hosts of [SMALL, BIG]) {
      const client = new FleetClient({ redisUrl, prefix: `fleet-${hosts}-${randomUUID().slice(0, 8)}` });
      const ids = await registerHosts(client, hosts, Math.ceil(SLOTS / hosts));
      fleets.push({ hosts, client, ids, admitted: 0, seconds: 0, redisCpuS: 0, nodeCpuS: 0, scriptUs: 0 });
    }
    for (let i = 0, w = 0; i < CREATES; i += WINDOW, w++) {
      for (const f of w % 2 === 0 ? fleets : [...fleets].reverse()) {
        const before = await redisCounters(counters);
        const node = process.cpuUsage();
        const started = performance.now();
        const answers = await f.client.createVms(
          Array.from({ length: Math.min(WINDOW, CREATES - i) }, (_, k) => ({ ...VM, name: `bf-${f.hosts}-${i + k}` })),
        );
        f.seconds += (performance.now() - started) / 1000;
        const used = process.cpuUsage(node);
        const after = await redisCounters(counters);
        f.redisCpuS += after.cpuS - before.cpuS;
        f.scriptUs += after.scriptUs - before.scriptUs;
        f.nodeCpuS += (used.user + used.system) / 1e6;
        f.admitted += answers.filter((a) => !(a instanceof Error)).length;
      }
    }
    const out: Scale[] = [];
    for (const f of fleets) {
      const ledger = f.client.vms.ledger;
      const checked = await inChunks(f.ids, 100, async (id) => {
        const [a, claimants] = await Promise.all([ledger.get(id), ledger.claimants(id)]);
        const over =
          a.allocated.memoryMiB > a.capacity.memoryMiB ||
          a.allocated.vcpus > a.capacity.vcpus ||
          (a.disk.capacityGiB !== undefined && a.disk.allocatedGiB > a.disk.capacityGiB);
        return { over, claims: claimants.length };
      });
      out.push({
        hosts: f.hosts,
        creates: CREATES,
        admitted: f.admitted,
        refused: CREATES - f.admitted,
        seconds: round(f.seconds, 2),
        redisCpuS: round(f.redisCpuS, 2),
        nodeCpuS: round(f.nodeCpuS, 2),
        perCreateRedisUs: round((f.redisCpuS * 1e6) / CREATES, 1),
        perCreateScriptUs: round(f.scriptUs / CREATES, 1),
        overcommitted: checked.filter((c) => c.over).length,
        claims: checked.reduce((t, c) => t + c.claims, 0),
      });
    }
    return out as [Scale, Scale];
  } finally {
    for (const f of fleets) await f.client.close();
    counters.disconnect();
    await emptyRedis(redisUrl);
  }
}

/** Milliseconds from POST /v1/batches (BATCH VMs, from a template) to its 202, over `hosts` empty hosts. */
async function batchAccept(redisUrl: string, hosts: number): Promise<number> {
  const prefix = `fleet-api-${randomUUID().slice(0, 8)}`;
  const client = new FleetClient({ redisUrl, prefix });
  await registerHosts(client, hosts, Math.ceil((BATCH * 1.2) / hosts));
  await client.close();
  const server = new ApiServer({
    redisUrl,
    prefix,
    tokens: new TokenStore([
      { id: "bench", token: TOKEN, scopes: ["vms:read", "vms:write"], tenant: "bench", quota: { vms: 100_000 } },
    ]),
    logger: pino({ level: "silent" }),
    port: 0,
  });
  await server.start();
  try {
    const started = performance.now();
    const res = await fetch(`${server.url}/v1/batches`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ template: { ...VM, name: "ba-{n}" }, count: BATCH }),
    });
    const body = (await res.json()) as { items?: { jobId?: string; error?: unknown }[] };
    const ms = performance.now() - started;
    const accepted = body.items?.filter((i) => i.jobId !== undefined && i.error === undefined).length ?? 0;
    if (res.status !== 202 || accepted !== BATCH)
      throw new Error(
        `batch of ${BATCH}: HTTP ${res.status}, ${accepted} accepted: ${JSON.stringify(body).slice(0, 300)}`,
      );
    return ms;
  } finally {
    await server.close();
    await emptyRedis(redisUrl);
  }
}

/** The `fleet` section: results.fleetScale and results.api.batch1000AcceptMs. */
export async function fleetScale(redisUrl: string, results: Record<string, unknown>): Promise<void> {
  await emptyRedis(redisUrl);
  // Each round interleaves the two sizes window by window (see scalePair); the figures are the
  // median round's (by its ratio), as in the control plane.
  const rounds: { small: Scale; big: Scale; ratio: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const [s, b] = await scalePair(redisUrl);
    rounds.push({ small: s, big: b, ratio: b.perCreateRedisUs / s.perCreateRedisUs });
  }
  const ratios = rounds.map((x) => x.ratio).sort((a, b) => a - b);
  const { small, big } = rounds.find((x) => x.ratio === median(ratios)) as (typeof rounds)[number];
  const acceptMs: number[] = [];
  for (let i = 0; i < API_RUNS; i++) acceptMs.push(await batchAccept(redisUrl, BIG));
  const r = {
    creates: CREATES,
    [`perCreateRedisUs${SMALL}`]: small.perCreateRedisUs,
    [`perCreateRedisUs${BIG}`]: big.perCreateRedisUs,
    costRatio1000To4: round(big.perCreateRedisUs / small.perCreateRedisUs, 3),
    costRatiosOfRounds: ratios.map((x) => round(x, 3)),
    [`perCreateScriptUs${SMALL}`]: small.perCreateScriptUs,
    [`perCreateScriptUs${BIG}`]: big.perCreateScriptUs,
    // Every round's hosts checked, not only the median round's.
    overcommitted: rounds.reduce((t, x) => t + x.small.overcommitted + x.big.overcommitted, 0),
    claimsMatchAdmitted: rounds.every((x) => x.small.claims === x.small.admitted && x.big.claims === x.big.admitted),
    scales: [small, big],
  };
  results.fleetScale = r;
  results.api = {
    ...(results.api as object),
    batch1000AcceptMs: round(median(acceptMs), 1),
    batch1000AcceptMsOfRuns: acceptMs.map((x) => round(x, 1)),
    batch1000Hosts: BIG,
  };
  table(
    `8. Fleet scale: ${CREATES} creates through createVms (windows of ${WINDOW}), simulated hosts, no worker (the median round of ${ROUNDS})`,
    [small, big].map((s) => ({
      hosts: s.hosts,
      admitted: s.admitted,
      seconds: s.seconds,
      "creates/s": round(s.creates / s.seconds, 0),
      "redis CPU µs/create": s.perCreateRedisUs,
      "script µs/create": s.perCreateScriptUs,
      "node CPU s": s.nodeCpuS,
      overcommitted: s.overcommitted,
      "claims in ledger": s.claims,
    })),
  );
  process.stdout.write(
    `cost at ${BIG} hosts / cost at ${SMALL} = ${r.costRatio1000To4} (target ≤ 1.5; median of ${ROUNDS} rounds: ${r.costRatiosOfRounds.join(", ")}), overcommitted hosts: ${r.overcommitted}, claims = admitted: ${r.claimsMatchAdmitted}\n`,
  );
  process.stdout.write(
    `API: POST /v1/batches of ${BATCH} VMs over ${BIG} hosts answered 202 in ${round(median(acceptMs), 1)} ms (median of ${API_RUNS}: ${acceptMs.map((x) => round(x, 1)).join(", ")})\n`,
  );
}
