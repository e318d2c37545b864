/**
 * The control plane a user would build by hand on BullMQ with the promises virtfleet makes: each
 * VM's name claimed with SET NX; the tenant's quota checked and one host's room claimed in one Lua
 * script (spread: the host with the most free memory); a durable record per job (HSET); the job
 * added to its host's queue (addBulk per host, in the window virtfleet's round uses); a plain BullMQ
 * worker per host reporting seven progress updates; the producer following completion through
 * QueueEvents. The benchmark's target: virtfleet must beat this (controlPlane.ratioToHandRolled).
 */
import { randomUUID } from "node:crypto";
import { Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";
import { cpuNow, cpuSince, type Round, withDeadline } from "./measure.js";

export interface HandRolledOptions {
  jobs: number;
  hosts: number;
  concurrencyPerHost: number;
  /** Creates submitted at once, as virtfleet's round does with createVms. */
  window: number;
  /** Progress updates each job reports (virtfleet's create reports seven events). */
  progressPerJob: number;
}

// KEYS: 1 the tenant's usage hash, 2.. each host's room hash (capMem, capVcpus, mem, vcpus).
// ARGV: memoryMiB, vcpus, then the tenant's quota: VMs, memoryMiB, vcpus.
// Returns the host's index (1-based) whose room was claimed, 0 when none has room, -1 over quota.
const CLAIM_LUA = `
local mem, vcpus = tonumber(ARGV[1]), tonumber(ARGV[2])
local u = redis.call('HMGET', KEYS[1], 'vms', 'mem', 'vcpus')
if tonumber(u[1] or '0') + 1 > tonumber(ARGV[3]) or tonumber(u[2] or '0') + mem > tonumber(ARGV[4])
  or tonumber(u[3] or '0') + vcpus > tonumber(ARGV[5]) then
  return -1
end
local best, bestFree = 0, -1
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'capMem', 'capVcpus', 'mem', 'vcpus')
  local free = tonumber(h[1] or '0') - tonumber(h[3] or '0')
  if free >= mem and tonumber(h[2] or '0') - tonumber(h[4] or '0') >= vcpus and free > bestFree then
    best, bestFree = i, free
  end
end
if best == 0 then return 0 end
redis.call('HINCRBY', KEYS[best], 'mem', mem)
redis.call('HINCRBY', KEYS[best], 'vcpus', vcpus)
redis.call('HINCRBY', KEYS[1], 'vms', 1)
redis.call('HINCRBY', KEYS[1], 'mem', mem)
redis.call('HINCRBY', KEYS[1], 'vcpus', vcpus)
return best - 1
`;

type ClaimingRedis = Redis & {
  claimRoom(numKeys: number, ...args: (string | number)[]): Promise<number>;
};

/** One round: `jobs` creates admitted, enqueued, run and followed to completion; its time and CPU. */
export async function handRolledRound(redisUrl: string, o: HandRolledOptions): Promise<Round> {
  const prefix = `hr-${randomUUID().slice(0, 8)}`;
  const conn = { url: redisUrl };
  const redis = new Redis(redisUrl) as ClaimingRedis;
  // ioredis sends the script by its SHA (EVALSHA) and loads it when Redis does not have it.
  redis.defineCommand("claimRoom", { lua: CLAIM_LUA });
  const hostKeys = Array.from({ length: o.hosts }, (_, h) => `${prefix}:room:host${h}`);
  for (const key of hostKeys) await redis.hset(key, { capMem: 1 << 30, capVcpus: 1 << 30, mem: 0, vcpus: 0 });
  const usageKey = `${prefix}:usage:bench`;
  const quota = [o.jobs * 2, o.jobs * 2 * 64, o.jobs * 2];
  const queues = Array.from(
    { length: o.hosts },
    (_, h) =>
      // Events kept for every job, so a slow reader cannot miss a completion to trimming.
      new Queue(`host${h}`, {
        connection: conn,
        prefix,
        streams: { events: { maxLen: o.jobs * (o.progressPerJob + 6) } },
      }),
  );
  const workers = queues.map(
    (q) =>
      new Worker(
        q.name,
        async (job) => {
          for (let k = 1; k <= o.progressPerJob; k++) await job.updateProgress(k);
        },
        { connection: conn, prefix, concurrency: o.concurrencyPerHost },
      ),
  );
  const events = queues.map((q) => new QueueEvents(q.name, { connection: conn, prefix }));
  await Promise.all([...workers.map((w) => w.waitUntilReady()), ...events.map((e) => e.waitUntilReady())]);
  let completed = 0;
  const allDone = new Promise<void>((resolve) => {
    for (const e of events)
      e.on("completed", () => {
        if (++completed === o.jobs) resolve();
      });
  });

  /** Admits one create: its name, then quota and room, then its record; the host's index. */
  const admit = async (n: number) => {
    const vm = `hr-${n}`;
    const jobId = `create-${randomUUID()}`;
    if ((await redis.set(`${prefix}:vm:${vm}`, jobId, "NX")) === null) throw new Error(`${vm}: name taken`);
    const host = await redis.claimRoom(1 + hostKeys.length, usageKey, ...hostKeys, 64, 1, ...quota);
    if (host <= 0) throw new Error(`${vm}: ${host === 0 ? "no room" : "over quota"}`);
    await redis.hset(`${prefix}:job:${jobId}`, {
      jobId,
      kind: "create",
      vm,
      hostId: `host${host - 1}`,
      state: "queued",
      memoryMiB: 64,
      vcpus: 1,
      createdAt: new Date().toISOString(),
    });
    return { host: host - 1, jobId, vm };
  };

  const cpu = await cpuNow(redisUrl);
  const started = performance.now();
  for (let i = 0; i < o.jobs; i += o.window) {
    const admitted = await Promise.all(Array.from({ length: Math.min(o.window, o.jobs - i) }, (_, k) => admit(i + k)));
    const byHost = new Map<number, typeof admitted>();
    for (const a of admitted) {
      const list = byHost.get(a.host) ?? [];
      list.push(a);
      byHost.set(a.host, list);
    }
    await Promise.all(
      [...byHost].map(([h, jobs]) =>
        (queues[h] as Queue).addBulk(
          jobs.map((j) => ({
            name: "create",
            data: { jobId: j.jobId, vm: j.vm, memoryMiB: 64, vcpus: 1 },
            opts: { jobId: j.jobId, removeOnComplete: true },
          })),
        ),
      ),
    );
  }
  await withDeadline(allDone, "hand-rolled BullMQ completions");
  const seconds = (performance.now() - started) / 1000;
  const used = await cpuSince(redisUrl, cpu);
  await Promise.all([
    ...workers.map((w) => w.close()),
    ...events.map((e) => e.close()),
    ...queues.map((q) => q.close()),
  ]);
  redis.disconnect();
  return { seconds, cpu: used };
}
