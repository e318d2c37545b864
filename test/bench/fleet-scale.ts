/**
 * Fleet scale: simulated hosts (no worker, no subprocess) registered as a worker registers them
 * (heartbeat with its status, capacity in the ledger), then creates through FleetClient.createVms in
 * windows. Measures Redis CPU per create at 1,000 hosts against 4 hosts in the same run, checks the
 * ledger for overcommit afterwards, and times the API accepting one 1,000-VM batch.
 */
import { randomUUID } from "node:crypto";
import { FleetClient } from "@virtfleet/fleet";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { pino } from "pino";
import { hostStatus } from "../fixtures/host-status.js";
import { cpuNow, cpuSince, emptyRedis, median, resetCommandStats, round, scriptUsec, table } from "./measure.js";

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

/** CREATES creates over `hosts` hosts: Redis time per create, then the ledger checked for overcommit. */
async function scale(redisUrl: string, hosts: number): Promise<Scale> {
  const prefix = `fleet-${randomUUID().slice(0, 8)}`;
  const client = new FleetClient({ redisUrl, prefix });
  try {
    const ids = await registerHosts(client, hosts, Math.ceil(SLOTS / hosts));
    await resetCommandStats(redisUrl);
    const cpu = await cpuNow(redisUrl);
    const started = performance.now();
    let admitted = 0;
    for (let i = 0; i < CREATES; i += WINDOW) {
      const answers = await client.createVms(
        Array.from({ length: Math.min(WINDOW, CREATES - i) }, (_, k) => ({ ...VM, name: `bf-${hosts}-${i + k}` })),
      );
      admitted += answers.filter((a) => !(a instanceof Error)).length;
    }
    const seconds = (performance.now() - started) / 1000;
    const used = await cpuSince(redisUrl, cpu, true);
    const scriptUs = await scriptUsec(redisUrl);
    const ledger = client.vms.ledger;
    const checked = await inChunks(ids, 100, async (id) => {
      const [a, claimants] = await Promise.all([ledger.get(id), ledger.claimants(id)]);
      const over =
        a.allocated.memoryMiB > a.capacity.memoryMiB ||
        a.allocated.vcpus > a.capacity.vcpus ||
        (a.disk.capacityGiB !== undefined && a.disk.allocatedGiB > a.disk.capacityGiB);
      return { over, claims: claimants.length };
    });
    return {
      hosts,
      creates: CREATES,
      admitted,
      refused: CREATES - admitted,
      seconds: round(seconds, 2),
      redisCpuS: round(used.redisCpuS, 2),
      nodeCpuS: round(used.nodeCpuS, 2),
      perCreateRedisUs: round((used.redisCpuS * 1e6) / CREATES, 1),
      perCreateScriptUs: round(scriptUs / CREATES, 1),
      overcommitted: checked.filter((c) => c.over).length,
      claims: checked.reduce((t, c) => t + c.claims, 0),
    };
  } finally {
    await client.close();
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
  // Rounds alternate the two sizes; the figures are the median round's (by its ratio), as in the
  // control plane: one round's ratio moves by ±0.2 on this machine.
  const rounds: { small: Scale; big: Scale; ratio: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const s = await scale(redisUrl, SMALL);
    const b = await scale(redisUrl, BIG);
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
