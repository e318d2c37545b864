/**
 * virtfleet benchmarks (`npm run bench`): host throughput against the plain recipe, control-plane
 * overhead against raw BullMQ, event latency, footprint, disk creation, create to ready by strategy
 * with the cloud guest, warm pool claims against create to ready. Every figure is a ratio
 * against a baseline run in the same process. Writes test/bench/results.json.
 */
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chown, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import { promisify } from "node:util";
import { HostAgent, type JobExecutor } from "@virtfleet/agent";
import { EventLog, FleetClient, Keys, VmRegistry } from "@virtfleet/fleet";
import type { CommandRunner } from "@virtfleet/hypervisor";
import { Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";
import { pino } from "pino";
import { LocalRedis } from "../fixtures/redis-server.js";
import { claimLatency } from "./claims.js";
import { dashboardBench } from "./dashboard.js";
import { fleetScale } from "./fleet-scale.js";
import { handRolledRound } from "./hand-rolled.js";
import { cpuNow, cpuSince, emptyRedis, type Round, round, sleep, table, withDeadline } from "./measure.js";

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, "../..");
const ROOT = "/var/lib/virtfleet/bench";
const IMAGES = path.join(ROOT, "images");
const C = Number(process.env.BENCH_CONCURRENCY ?? os.cpus().length);
const VMS = Number(process.env.BENCH_VMS ?? 40);
const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const EVENTS = Number(process.env.BENCH_EVENTS ?? 10_000);
const results: Record<string, unknown> = {};
const logger = pino({ level: "silent" });
async function virsh(...args: string[]): Promise<string> {
  try {
    return (await run("virsh", ["-c", "qemu:///system", ...args], { env: { ...process.env, LC_ALL: "C" } })).stdout;
  } catch {
    return "";
  }
}

async function destroyDomains(prefix: string): Promise<void> {
  const names = (await virsh("list", "--all", "--name"))
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.startsWith(prefix));
  await Promise.all(
    names.map(async (n) => {
      await virsh("destroy", n);
      await virsh("undefine", n, "--nvram");
    }),
  );
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** 1. VMs per minute: the recipe in a sequential loop, the recipe under xargs -P C, and virtfleet. */
async function hostThroughput(redis: LocalRedis): Promise<void> {
  const recipe = path.join(repo, "test/bench/recipe-one.sh");
  const shell = async (label: string, script: string, prefix: string) => {
    const dir = path.join(ROOT, `vfbench-${label}`);
    const cleanUp = async () => {
      await destroyDomains(prefix);
      await virsh("pool-destroy", `vfbench-${label}`);
      await virsh("pool-undefine", `vfbench-${label}`);
      await rm(dir, { recursive: true, force: true });
    };
    // What an earlier run left when it was killed mid-recipe (no finally runs then).
    await cleanUp();
    await mkdir(dir, { recursive: true, mode: 0o755 });
    try {
      // Parallel `virt-install --disk path=` calls race to define a pool over a new folder and fail;
      // a user running the recipe with xargs defines it first. Same set-up for both, not timed.
      await virsh("pool-create-as", `vfbench-${label}`, "dir", "--target", dir);
      const started = performance.now();
      await run("bash", ["-c", script, "bench", recipe, dir, IMAGES, String(VMS), String(C), prefix], {
        maxBuffer: 1 << 24,
      });
      return (performance.now() - started) / 1000;
    } finally {
      await cleanUp();
    }
  };
  const seqSeconds = await shell("seq", 'for i in $(seq 1 "$4"); do "$1" "$6$i" "$2" "$3"; done', "vfb-s-");
  const xargsSeconds = await shell("xargs", 'seq 1 "$4" | xargs -P "$5" -I{} "$1" "$6{}" "$2" "$3"', "vfb-x-");

  // The recipe's plain virt-install lets libvirt chown the backing image to QEMU's user, and a run
  // killed mid-recipe leaves it so; a worker refuses a shared image QEMU could write (as it should).
  for (const f of await readdir(IMAGES)) await chown(path.join(IMAGES, f), 0, 0);

  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const storage = path.join(ROOT, "vfbench-vf");
  // VMs and files an earlier, killed run left (their records went with its private Redis).
  await destroyDomains("vfb-v-");
  await rm(storage, { recursive: true, force: true });
  await mkdir(storage, { recursive: true, mode: 0o755 });
  const env = { ...process.env, REDIS_URL: redis.url, VIRTFLEET_PREFIX: prefix };
  const worker = spawn(process.execPath, [path.join(repo, "apps/worker/dist/main.js")], {
    env: {
      ...env,
      VIRTFLEET_HOST_ID: "bench",
      VIRTFLEET_STORAGE_DIR: storage,
      VIRTFLEET_IMAGE_DIR: IMAGES,
      VIRTFLEET_VIRT_TYPE: "qemu",
      VIRTFLEET_CONCURRENCY: String(C),
      VIRTFLEET_CAPACITY_MEMORY_MB: "65536",
      VIRTFLEET_CAPACITY_VCPUS: "256",
      LOG_LEVEL: "warn",
    },
    stdio: "ignore",
  });
  const client = new FleetClient({ redisUrl: redis.url, prefix });
  while (!(await client.hosts.get("bench"))?.up) await sleep(100);
  await sleep(2000);
  const idleRss = await rssKiB(worker.pid as number);
  let peakRss = idleRss;
  const sampler = setInterval(() => {
    void rssKiB(worker.pid as number).then((r) => {
      peakRss = Math.max(peakRss, r);
    });
  }, 200);
  const cli = path.join(repo, "apps/cli/dist/main.js");
  const started = performance.now();
  await run(
    process.execPath,
    [
      cli,
      "create",
      "--name",
      "vfb-v-{n}",
      "--count",
      String(VMS),
      "--memory",
      "192",
      "--disk",
      "size=1,backing=tiny",
      "--boot",
      "kernel=tiny,initrd=tiny,kernel_args=console=ttyS0 quiet",
      "--network",
      "none",
      "--virt-type",
      "qemu",
      "--wait",
      "--wait-ready",
      "--json",
    ],
    { env, maxBuffer: 1 << 24 },
  );
  const vfSeconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  const running = (await virsh("list", "--name")).split("\n").filter((s) => s.startsWith("vfb-v-")).length;
  const names = Array.from({ length: VMS }, (_, i) => `vfb-v-${i + 1}`);
  await run(process.execPath, [cli, "destroy", ...names, "--wait", "--json"], { env, maxBuffer: 1 << 24 });
  await client.close();
  worker.kill("SIGTERM");
  await new Promise((r) => worker.once("exit", r));
  await destroyDomains("vfb-v-");
  await rm(storage, { recursive: true, force: true });

  const perMin = (s: number) => round((VMS / s) * 60, 1);
  const r = {
    vms: VMS,
    concurrency: C,
    sequentialPerMin: perMin(seqSeconds),
    xargsPerMin: perMin(xargsSeconds),
    virtfleetPerMin: perMin(vfSeconds),
    virtfleetRunning: running,
    ratioToXargs: round(xargsSeconds / vfSeconds, 3),
    ratioToSequential: round(seqSeconds / vfSeconds, 3),
  };
  results.hostThroughput = r;
  results.footprint = {
    ...(results.footprint as object),
    workerRssIdleMiB: round(idleRss / 1024, 1),
    workerRssUnderLoadMiB: round(peakRss / 1024, 1),
  };
  table(`1. Host throughput: ${VMS} tiny TCG VMs to the guest's ready line, concurrency ${C}`, [
    { way: "recipe, sequential loop", seconds: round(seqSeconds, 1), "VMs/min": r.sequentialPerMin },
    { way: `recipe, xargs -P ${C}`, seconds: round(xargsSeconds, 1), "VMs/min": r.xargsPerMin },
    {
      way: `virtfleet (CLI → Redis → worker, concurrency ${C})`,
      seconds: round(vfSeconds, 1),
      "VMs/min": r.virtfleetPerMin,
    },
  ]);
  process.stdout.write(
    `virtfleet / xargs = ${r.ratioToXargs}, virtfleet / sequential = ${r.ratioToSequential}, running at the end: ${running}/${VMS}\n`,
  );
}

/** A runner that answers the few virsh calls a worker makes at start, and runs nothing. */
const fakeRunner: CommandRunner = {
  async run(_file, args) {
    if (args.includes("nodeinfo")) return { stdout: "CPU(s): 64\nMemory size: 268435456 KiB\n", stderr: "" };
    return { stdout: "", stderr: "" };
  },
};

/**
 * With BENCH_PHASES=0 the simulated hosts report none of a create's four middle phases (a job then
 * has 3 events: queued, placed, done), to show what those events cost.
 */
const MIDDLE_PHASES = process.env.BENCH_PHASES !== "0";
const EVENTS_PER_JOB = MIDDLE_PHASES ? 7 : 3;

/** An executor that reports a create's phases and does no subprocess work. */
const noopExecutor: JobExecutor = {
  async create(_data, report) {
    if (!MIDDLE_PHASES) return;
    await report("disk.creating", "bench");
    await report("disk.ready", "bench");
    await report("domain.defining", "bench");
    await report("domain.running", "bench");
  },
  async destroy(_data, report) {
    await report("stopping", "bench");
  },
  async rollback() {},
};

const HOSTS = 4;
const PER_HOST_CONCURRENCY = 50;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Creates the producers submit at once (virtfleet's createVms and the hand-rolled round alike). */
const WINDOW = 500;

/** Counts terminal events on the all-events stream until `n` have arrived. */
async function countDone(redisUrl: string, keys: Keys, n: number, from = "$"): Promise<void> {
  const r = new Redis(redisUrl);
  let last = from === "$" ? ((await r.xrevrange(keys.allEvents(), "+", "-", "COUNT", 1))[0]?.[0] ?? "0") : from;
  let done = 0;
  while (done < n) {
    const reply = (await r.xread("COUNT", 5000, "BLOCK", 5000, "STREAMS", keys.allEvents(), last)) as
      | [string, [string, string[]][]][]
      | null;
    for (const [, items] of reply ?? []) {
      for (const [id, fields] of items) {
        last = id;
        // An entry holds one script run's events: fields e, json, e, json, …
        for (let i = 1; i < fields.length; i += 2) if ((fields[i] as string).includes('"phase":"done"')) done++;
      }
    }
  }
  r.disconnect();
}

const REDIS_STATS = process.env.BENCH_REDIS_STATS === "1";

/** With BENCH_REDIS_STATS=1: clears Redis's per-command counters (read back by printRedisStats). */
async function resetRedisStats(url: string): Promise<void> {
  if (!REDIS_STATS) return;
  const r = new Redis(url);
  await r.config("RESETSTAT");
  await r.config("SET", "slowlog-log-slower-than", "0", "slowlog-max-len", "1000000");
  await r.slowlog("RESET");
  r.disconnect();
}

/** With BENCH_REDIS_STATS=1: prints where Redis spent its time, per job, command by command. */
async function printRedisStats(url: string, label: string): Promise<void> {
  if (!REDIS_STATS) return;
  const r = new Redis(url);
  const info = await r.info("commandstats");
  const log = (await r.call("SLOWLOG", "GET", "-1")) as [number, number, number, string[]][];
  await r.config("SET", "slowlog-log-slower-than", "10000", "slowlog-max-len", "128");
  await r.slowlog("RESET");
  r.disconnect();
  const scripts = new Map<string, { calls: number; us: number; keys: number }>();
  for (const [, , us, argv] of log) {
    if (argv[0]?.toLowerCase() !== "evalsha") continue;
    const sha = (argv[1] ?? "").slice(0, 8);
    const s = scripts.get(sha) ?? { calls: 0, us: 0, keys: 0 };
    s.calls++;
    s.us += us;
    s.keys = Number(argv[2]);
    scripts.set(sha, s);
  }
  table(
    `Redis scripts, ${label}`,
    [...scripts]
      .map(([sha, s]) => ({
        sha,
        keys: s.keys,
        "calls/job": round(s.calls / JOBS, 3),
        "µs/job": round(s.us / JOBS, 1),
        "µs/call": round(s.us / s.calls, 1),
      }))
      .sort((a, b) => b["µs/job"] - a["µs/job"]),
  );
  const rows = [...info.matchAll(/cmdstat_(\S+):calls=(\d+),usec=(\d+)/g)]
    .map(([, cmd, calls, usec]) => ({
      command: cmd as string,
      "calls/job": round(Number(calls) / JOBS, 2),
      "µs/job": round(Number(usec) / JOBS, 1),
    }))
    .sort((a, b) => b["µs/job"] - a["µs/job"]);
  const total = rows.reduce((t, x) => t + x["µs/job"], 0);
  table(
    `Redis commands, ${label} (${round(total, 1)} µs/job in commands; scripts include the commands they call)`,
    rows,
  );
}

/** Raw BullMQ: addBulk, an empty processor, the same hosts and concurrency, completion events. */
async function rawBullmqRound(redis: LocalRedis): Promise<Round> {
  const rawPrefix = `raw-${randomUUID().slice(0, 8)}`;
  const conn = { url: redis.url };
  const queues = Array.from(
    { length: HOSTS },
    (_, h) =>
      // Events kept for every job, so a slow reader cannot miss a completion to trimming.
      new Queue(`host.raw${h}`, { connection: conn, prefix: rawPrefix, streams: { events: { maxLen: JOBS * 10 } } }),
  );
  const workers = queues.map(
    (q) =>
      new Worker(q.name, async () => undefined, {
        connection: conn,
        prefix: rawPrefix,
        concurrency: PER_HOST_CONCURRENCY,
      }),
  );
  const events = queues.map((q) => new QueueEvents(q.name, { connection: conn, prefix: rawPrefix }));
  await Promise.all([...workers.map((w) => w.waitUntilReady()), ...events.map((e) => e.waitUntilReady())]);
  let completed = 0;
  const allDone = new Promise<void>((resolve) => {
    for (const e of events)
      e.on("completed", () => {
        if (++completed === JOBS) resolve();
      });
  });
  await resetRedisStats(redis.url);
  const cpu = await cpuNow(redis.url);
  const started = performance.now();
  for (let i = 0; i < JOBS; i += 1000) {
    const chunk = Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({
      name: "create",
      data: { n: i + k },
      opts: { removeOnComplete: true },
    }));
    await (queues[(i / 1000) % HOSTS] as Queue).addBulk(chunk);
  }
  await withDeadline(allDone, "raw BullMQ completions");
  const seconds = (performance.now() - started) / 1000;
  const used = await cpuSince(redis.url, cpu);
  await printRedisStats(redis.url, "raw BullMQ");
  await Promise.all([
    ...workers.map((w) => w.close()),
    ...events.map((e) => e.close()),
    ...queues.map((q) => q.close()),
  ]);
  await emptyRedis(redis.url);
  return { seconds, cpu: used };
}

/**
 * virtfleet: FleetClient.createVms in chunks (validation, admission: name claim, quota, placement
 * with an atomic room claim, job record, first events; bulk enqueue), simulated hosts running the
 * real HostAgent with a no-op executor, and the producer following done events.
 */
async function virtfleetRound(redis: LocalRedis): Promise<Round> {
  const prefix = `cp-${randomUUID().slice(0, 8)}`;
  const keys = new Keys(prefix);
  const agents = await Promise.all(
    Array.from({ length: HOSTS }, async (_, h) => {
      const dir = path.join(os.tmpdir(), `vfbench-cp-${prefix}-${h}`);
      const agent = new HostAgent({
        redisUrl: redis.url,
        prefix,
        hostId: `sim${h}`,
        storageDir: dir,
        imageDir: dir,
        virtType: "qemu",
        concurrency: PER_HOST_CONCURRENCY,
        capacityMemoryMiB: 1 << 30,
        capacityVcpus: 1 << 30,
        // The simulated hosts write no disks: room for every job's 1 GiB on any storage filesystem.
        overcommitDisk: 1 << 20,
        logger,
        runner: fakeRunner,
        executor: noopExecutor,
        heartbeatMs: 5000,
      });
      await agent.start();
      return { agent, dir };
    }),
  );
  const client = new FleetClient({ redisUrl: redis.url, prefix });
  const counting = countDone(redis.url, keys, JOBS);
  await resetRedisStats(redis.url);
  const cpu = await cpuNow(redis.url);
  const started = performance.now();
  for (let i = 0; i < JOBS; i += WINDOW) {
    const results = await client.createVms(
      Array.from({ length: Math.min(WINDOW, JOBS - i) }, (_, k) => ({
        name: `cp-${i + k}`,
        memoryMiB: 64,
        vcpus: 1,
        disks: [{ sizeGiB: 1 }],
      })),
    );
    const refused = results.find((r) => r instanceof Error);
    if (refused !== undefined) throw refused;
  }
  const submitSeconds = (performance.now() - started) / 1000;
  await withDeadline(counting, "virtfleet done events");
  const seconds = (performance.now() - started) / 1000;
  const used = await cpuSince(redis.url, cpu);
  await printRedisStats(redis.url, "virtfleet");
  process.stdout.write(`virtfleet: submitted in ${round(submitSeconds, 2)} s, all done after ${round(seconds, 2)} s\n`);
  await client.close();
  for (const { agent, dir } of agents) {
    await agent.close();
    await rm(dir, { recursive: true, force: true });
  }
  await emptyRedis(redis.url);
  return { seconds, cpu: used };
}

/**
 * 2. Control-plane overhead: jobs/s through virtfleet with no subprocess work, against raw BullMQ
 * (the floor: BullMQ doing nothing) and against BullMQ by hand with the same promises (the target).
 * Rounds alternate the three (ROUNDS, default 3); each figure is its median round's.
 */
async function controlPlane(redis: LocalRedis): Promise<void> {
  const rounds: { raw: Round; hr: Round; vf: Round; ratio: number; hrRatio: number; cpuRatio: number }[] = [];
  /** Node and Redis CPU seconds of a round, together: what the round cost the machine. */
  const cpuOf = (x: Round) => x.cpu.nodeCpuS + x.cpu.redisCpuS;
  for (let i = 0; i < ROUNDS; i++) {
    const raw = await rawBullmqRound(redis);
    const hr = await handRolledRound(redis.url, {
      jobs: JOBS,
      hosts: HOSTS,
      concurrencyPerHost: PER_HOST_CONCURRENCY,
      window: WINDOW,
      progressPerJob: EVENTS_PER_JOB,
    });
    await emptyRedis(redis.url);
    const vf = await virtfleetRound(redis);
    rounds.push({
      raw,
      hr,
      vf,
      ratio: raw.seconds / vf.seconds,
      hrRatio: hr.seconds / vf.seconds,
      cpuRatio: cpuOf(hr) / cpuOf(vf),
    });
    process.stdout.write(
      `round ${i + 1}: raw ${round(raw.seconds, 2)} s, hand-rolled ${round(hr.seconds, 2)} s, virtfleet ${round(vf.seconds, 2)} s\n`,
    );
  }
  const medianBy = (ratio: (x: (typeof rounds)[number]) => number) => {
    const sorted = rounds.map(ratio).sort((a, b) => a - b);
    const m = sorted[Math.floor(sorted.length / 2)];
    return { round: rounds.find((x) => ratio(x) === m) as (typeof rounds)[number], sorted };
  };
  const { round: median, sorted: ratios } = medianBy((x) => x.ratio);
  const { round: hrMedian, sorted: hrRatios } = medianBy((x) => x.hrRatio);
  const { raw, vf } = median;
  const { hr } = hrMedian;
  const { round: cpuMedian, sorted: cpuRatios } = medianBy((x) => x.cpuRatio);
  const r = {
    jobs: JOBS,
    hosts: HOSTS,
    concurrencyPerHost: PER_HOST_CONCURRENCY,
    eventsPerJob: EVENTS_PER_JOB,
    rounds: ROUNDS,
    rawBullmqJobsPerSec: round(JOBS / raw.seconds, 0),
    virtfleetJobsPerSec: round(JOBS / vf.seconds, 0),
    ratioToRawBullmq: round(median.ratio, 3),
    ratiosOfRounds: ratios.map((x) => round(x, 3)),
    rawCpu: raw.cpu,
    virtfleetCpu: vf.cpu,
    handRolledJobsPerSec: round(JOBS / hr.seconds, 0),
    ratioToHandRolled: round(hrMedian.hrRatio, 3),
    ratiosToHandRolledOfRounds: hrRatios.map((x) => round(x, 3)),
    handRolledCpu: hr.cpu,
    // Hand-rolled's CPU (Node + Redis) per round over virtfleet's: what each create costs the machines
    // it runs on, whatever the wall time (in production the producer, workers and Redis are apart).
    cpuRatioToHandRolled: round(cpuMedian.cpuRatio, 3),
    cpuRatiosToHandRolledOfRounds: cpuRatios.map((x) => round(x, 3)),
  };
  results.controlPlane = r;
  table(
    `2. Control plane: ${JOBS} create jobs, ${HOSTS} simulated hosts × concurrency ${PER_HOST_CONCURRENCY}, no subprocess work (median of ${ROUNDS} rounds)`,
    [
      {
        way: "raw BullMQ (addBulk, empty processor, completion events): the floor",
        seconds: round(raw.seconds, 2),
        "jobs/s": r.rawBullmqJobsPerSec,
        "node CPU s": raw.cpu.nodeCpuS,
        "redis CPU s": raw.cpu.redisCpuS,
      },
      {
        way: `hand-rolled BullMQ (SET NX, quota + room in Lua, HSET record, addBulk, ${EVENTS_PER_JOB} updateProgress, completion events): the target`,
        seconds: round(hr.seconds, 2),
        "jobs/s": r.handRolledJobsPerSec,
        "node CPU s": hr.cpu.nodeCpuS,
        "redis CPU s": hr.cpu.redisCpuS,
      },
      {
        way: `virtfleet (createVms → admission → worker → ${EVENTS_PER_JOB} events each)`,
        seconds: round(vf.seconds, 2),
        "jobs/s": r.virtfleetJobsPerSec,
        "node CPU s": vf.cpu.nodeCpuS,
        "redis CPU s": vf.cpu.redisCpuS,
      },
    ],
  );
  process.stdout.write(`virtfleet / raw BullMQ = ${r.ratioToRawBullmq} (rounds: ${r.ratiosOfRounds.join(", ")})\n`);
  process.stdout.write(
    `virtfleet / hand-rolled BullMQ = ${r.ratioToHandRolled} (target ≥ 1.5; rounds: ${r.ratiosToHandRolledOfRounds.join(", ")})\n`,
  );
  process.stdout.write(
    `CPU (Node + Redis) of hand-rolled BullMQ / virtfleet's = ${r.cpuRatioToHandRolled} (rounds: ${r.cpuRatiosToHandRolledOfRounds.join(", ")})\n`,
  );
}

/**
 * Bursts of events before the measured ones (their own jobs, the same code paths), unmeasured but
 * for `p99ColdMs`: V8 compiles the hot functions (TurboFan) around the 10th to 15th burst, and on
 * 2 cores shared with Redis that work delays a burst by 5-15 ms (with `node --no-opt` those bursts
 * are as fast as the rest). What a producer that has been running a while sees is the measured part.
 */
const WARMUP_BURSTS = Number(process.env.BENCH_WARMUP_BURSTS ?? 30);

/** 3. Event latency: a worker's progress update to the producer's handler. */
async function eventLatency(redis: LocalRedis): Promise<void> {
  const now = () => performance.timeOrigin + performance.now();
  const prefix = `lat-${randomUUID().slice(0, 8)}`;
  const keys = new Keys(prefix);
  const writer = new Redis(redis.url);
  const log = new EventLog(writer, keys);
  const client = new FleetClient({ redisUrl: redis.url, prefix });
  const JOBS_N = 100;
  const PER_JOB = Math.ceil(EVENTS / JOBS_N);
  // And p99 without the first bursts of the measured pass: what a long-running process sees.
  const WARM_BURSTS = 10;

  /**
   * `bursts` rounds of one event for each of 100 jobs (one turn of the event loop, as a busy worker
   * sends them), 5 ms apart, each followed by the producer; each event's latency, arrival minus send.
   */
  const pass = async (name: string, bursts: number) => {
    const latencies: number[] = [];
    const warmLatencies: number[] = [];
    // How long each burst's 100 appends take to be answered (the write side of the latency).
    const writes: number[] = [];
    // Breakdown: each burst's slowest event.
    const burstMax: number[] = [];
    const ids = Array.from({ length: JOBS_N }, (_, j) => `${name}-${j}`);
    for (const id of ids) await log.createJob({ jobId: id, kind: "create", vm: "lat" });
    const following = ids.map(async (id) => {
      let k = 0;
      for await (const e of client.job(id).events()) {
        if (e.phase === "queued" && e.message === "") continue;
        const latency = now() - Number(e.message);
        latencies.push(latency);
        if (k >= WARM_BURSTS) warmLatencies.push(latency);
        burstMax[k] = Math.max(burstMax[k] ?? 0, latency);
        k++;
        if (e.phase === "done") return;
      }
    });
    await sleep(500);
    // Each event's message carries the send time in ms (sub-millisecond: writer and reader share
    // this process's clock); the reader measures arrival minus send.
    for (let k = 0; k < bursts; k++) {
      const sent = now();
      await Promise.all(
        ids.map((id) =>
          log.append({
            jobId: id,
            kind: "create",
            vm: "lat",
            phase: k === bursts - 1 ? "done" : "domain.defining",
            message: String(now()),
          }),
        ),
      );
      writes.push(now() - sent);
      await sleep(5);
    }
    await Promise.all(following);
    return { latencies, warmLatencies, writes, burstMax };
  };

  const cold = WARMUP_BURSTS > 0 ? await pass("lat-warmup", WARMUP_BURSTS) : undefined;
  const gcPauses: number[] = [];
  let gcMajorMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcPauses.push(entry.duration);
      // Mark-sweep-compact (perf_hooks' NODE_PERFORMANCE_GC_MAJOR); the others are young-generation ones.
      if (
        (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ===
        constants.NODE_PERFORMANCE_GC_MAJOR
      )
        gcMajorMs += entry.duration;
    }
  });
  gc.observe({ entryTypes: ["gc"] });
  const cpu = await cpuNow(redis.url);
  const measured = await pass("lat", PER_JOB);
  gc.disconnect();
  const used = await cpuSince(redis.url, cpu, true);
  await client.close();
  writer.disconnect();
  const { latencies, warmLatencies, writes, burstMax } = measured;
  latencies.sort((a, b) => a - b);
  warmLatencies.sort((a, b) => a - b);
  writes.sort((a, b) => a - b);
  const coldLatencies = (cold?.latencies ?? []).sort((a, b) => a - b);
  const pick = (q: number, of = latencies) => of[Math.min(of.length - 1, Math.floor(q * of.length))] ?? 0;
  const r = {
    events: latencies.length,
    warmupBursts: WARMUP_BURSTS,
    p50Ms: round(pick(0.5), 1),
    p99Ms: round(pick(0.99), 1),
    maxMs: round(latencies.at(-1) ?? 0, 1),
    // The warm-up pass's own p99: the process's first bursts, V8's compilation of the hot code included.
    p99ColdMs: round(pick(0.99, coldLatencies), 1),
    // The write side: a burst's appends answered (its first event reaches the reader about then).
    writeP50Ms: round(pick(0.5, writes), 1),
    writeP99Ms: round(pick(0.99, writes), 1),
    // CPU per event (writer, Redis, 100 readers): what the latency is made of on a busy machine.
    nodeCpuUsPerEvent: round((used.nodeCpuS * 1e6) / latencies.length, 1),
    redisCpuUsPerEvent: round((used.redisCpuS * 1e6) / latencies.length, 1),
    // Breakdown: the slowest bursts (a burst's 100 events arrive together: p99 is about the slowest), GC pauses.
    slowestBurstsMs: burstMax
      .map((ms, k) => ({ burst: k, ms: round(ms, 1) }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 3),
    p99AfterFirstBurstsMs: round(pick(0.99, warmLatencies), 1),
    gcPauses: gcPauses.length,
    gcPauseMs: round(
      gcPauses.reduce((t, d) => t + d, 0),
      1,
    ),
    gcPauseMaxMs: round(Math.max(0, ...gcPauses), 1),
    gcMajorPauseMs: round(gcMajorMs, 1),
  };
  results.eventLatency = r;
  table(
    `3. Event latency: ${r.events} events, ${JOBS_N} jobs followed at once, after ${WARMUP_BURSTS} warm-up bursts`,
    [
      {
        p50_ms: r.p50Ms,
        p99_ms: r.p99Ms,
        max_ms: r.maxMs,
        "cold p99 ms": r.p99ColdMs,
        "burst write p50/p99 ms": `${r.writeP50Ms} / ${r.writeP99Ms}`,
        "node CPU µs/event": r.nodeCpuUsPerEvent,
        "redis CPU µs/event": r.redisCpuUsPerEvent,
      },
    ],
  );
  process.stdout.write(
    `p99 of the ${WARMUP_BURSTS} warm-up bursts (a cold process): ${r.p99ColdMs} ms; ` +
      `p99 without the first ${WARM_BURSTS} measured bursts: ${r.p99AfterFirstBurstsMs} ms; ` +
      `slowest bursts (last event): ${r.slowestBurstsMs.map((b) => `#${b.burst} ${b.ms} ms`).join(", ")}; ` +
      `GC pauses while measuring: ${r.gcPauses}, ${r.gcPauseMs} ms in all, longest ${r.gcPauseMaxMs} ms, major (mark-compact) ${r.gcMajorPauseMs} ms\n`,
  );
}

/** 4. Redis memory per queued job and per registered VM. */
async function redisFootprint(redis: LocalRedis): Promise<void> {
  const r = new Redis(redis.url);
  const used = async () => Number(/used_memory:(\d+)/.exec(await r.info("memory"))?.[1] ?? 0);
  const N = 5000;
  const prefix = `fp-${randomUUID().slice(0, 8)}`;
  const keys = new Keys(prefix);
  const client = new FleetClient({ redisUrl: redis.url, prefix });
  const status = {
    hostId: "fp",
    version: "bench",
    startedAt: "",
    heartbeatAt: "",
    libvirtUri: "",
    virtTypes: ["qemu" as const],
    defaultVirtType: "qemu" as const,
    concurrency: 1,
    memoryMiB: { total: 1, capacity: 1 << 30 },
    vcpus: { total: 1, capacity: 1 << 30 },
    diskFreeGiB: 1,
    runningVms: 0,
    images: [],
    labels: {},
    draining: false,
    orphans: [],
  };
  await client.vms.ledger.setCapacity("fp", 1 << 30, 1 << 30);
  await client.hosts.heartbeat(status, 600_000);
  await client.createVm({ name: "fp-warm", memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] });
  let before = await used();
  for (let i = 0; i < N; i += 250) {
    await Promise.all(
      Array.from({ length: 250 }, (_, k) =>
        client.createVm({ name: `fp-${i + k}`, memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] }),
      ),
    );
  }
  const perJob = ((await used()) - before) / N;
  const vms = new VmRegistry(r, new Keys(`${prefix}-vm`));
  before = await used();
  for (let i = 0; i < N; i++) {
    await vms.put({
      name: `vm-${i}`,
      hostId: "fp",
      state: "running",
      fingerprint: "f".repeat(64),
      jobId: `create-${randomUUID()}`,
      memoryMiB: 512,
      vcpus: 1,
      labels: {},
      updatedAt: new Date().toISOString(),
    });
  }
  const perVm = ((await used()) - before) / N;
  await client.close();
  r.disconnect();
  void keys;
  results.footprint = {
    ...(results.footprint as object),
    redisBytesPerQueuedJob: Math.round(perJob),
    redisBytesPerRegisteredVm: Math.round(perVm),
  };
  table("4. Footprint", [
    { what: "Redis bytes per queued create job (record, events, queue entry, VM claim)", value: Math.round(perJob) },
    { what: "Redis bytes per registered VM", value: Math.round(perVm) },
  ]);
}

/** 5. Linked clone (qcow2 overlay) against a full copy, for a 1 GiB and a 10 GiB base. */
async function diskCreation(): Promise<void> {
  const dir = path.join(ROOT, "vfbench-disk");
  await mkdir(dir, { recursive: true });
  const rows: Record<string, string | number>[] = [];
  const out: Record<string, unknown> = {};
  const time = async (fn: () => Promise<unknown>, runs: number) => {
    const t: number[] = [];
    for (let i = 0; i < runs; i++) {
      const s = performance.now();
      await fn();
      t.push(performance.now() - s);
    }
    t.sort((a, b) => a - b);
    return t[Math.floor(t.length / 2)] as number;
  };
  for (const gib of [1, 10]) {
    const base = path.join(dir, `base-${gib}.raw`);
    await run("truncate", ["-s", `${gib}G`, base]);
    let n = 0;
    const overlayMs = await time(
      () =>
        run("qemu-img", [
          "create",
          "-q",
          "-f",
          "qcow2",
          "-b",
          base,
          "-F",
          "raw",
          path.join(dir, `ov-${gib}-${n++}.qcow2`),
        ]),
      5,
    );
    const copyMs = await time(
      async () => {
        const target = path.join(dir, `copy-${gib}.raw`);
        await run("cp", ["--sparse=never", base, target]);
        await rm(target);
      },
      gib === 1 ? 3 : 1,
    );
    out[`base${gib}GiB`] = {
      overlayMs: round(overlayMs, 1),
      fullCopyMs: round(copyMs, 0),
      speedup: round(copyMs / overlayMs, 0),
    };
    rows.push({
      base: `${gib} GiB`,
      "qcow2 overlay ms": round(overlayMs, 1),
      "full copy ms": round(copyMs, 0),
      "copy / overlay": round(copyMs / overlayMs, 0),
    });
  }
  await rm(dir, { recursive: true, force: true });
  results.diskCreation = out;
  table("5. Disk creation: linked clone vs full copy (cp --sparse=never)", rows);
}

/**
 * 6. Create to ready with the Debian 12 cloud guest (deploy/build-cloud-guest.sh), by readiness
 * strategy: one VM at a time, from the CLI's start to its exit, then destroyed. The baseline is the
 * console strategy waiting for cloud-init's "finished at" line; `ip` runs with a static address from
 * cloud-init's network-config on a bridge with no host address (nothing on the host talks to it).
 */
async function readiness(redis: LocalRedis): Promise<void> {
  await run("bash", [path.join(repo, "deploy/build-cloud-guest.sh"), IMAGES], { maxBuffer: 1 << 24 });
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const storage = path.join(ROOT, "vfbench-ready");
  await mkdir(storage, { recursive: true, mode: 0o755 });
  const bridge = `vfbr${randomUUID().slice(0, 4)}`;
  await run("ip", ["link", "add", bridge, "type", "bridge"]);
  await run("ip", ["link", "set", bridge, "up"]);
  const env = { ...process.env, REDIS_URL: redis.url, VIRTFLEET_PREFIX: prefix };
  const worker = spawn(process.execPath, [path.join(repo, "apps/worker/dist/main.js")], {
    env: {
      ...env,
      VIRTFLEET_HOST_ID: "bench-ready",
      VIRTFLEET_STORAGE_DIR: storage,
      VIRTFLEET_IMAGE_DIR: IMAGES,
      VIRTFLEET_VIRT_TYPE: "qemu",
      LOG_LEVEL: "warn",
    },
    stdio: "ignore",
  });
  const client = new FleetClient({ redisUrl: redis.url, prefix });
  const cli = path.join(repo, "apps/cli/dist/main.js");
  const netFile = path.join(ROOT, "vfbench-ready-net.yaml");
  const mac = "52:54:00:be:9c:01";
  await writeFile(
    netFile,
    `version: 2\nethernets:\n  lan:\n    match:\n      macaddress: "${mac}"\n    set-name: eth0\n    addresses: [192.0.2.99/24]\n`,
  );
  const strategies: [string, string[], string[]][] = [
    ["console (cloud-init's finished line)", ["--wait-ready", "finished at"], ["--network", "none"]],
    ["agent", ["--wait-ready", "agent"], ["--network", "none"]],
    [
      "ip (static, from network-config)",
      ["--wait-ready", "ip"],
      ["--network", `bridge=${bridge},model=virtio,mac=${mac}`, "--cloud-init", `network-config=${netFile}`],
    ],
    ["cloud-init", ["--wait-ready", "cloud-init"], ["--network", "none"]],
  ];
  const rows: { strategy: string; seconds: number }[] = [];
  try {
    while (!(await client.hosts.get("bench-ready"))?.up) await sleep(100);
    for (const [i, [label, wait, net]] of strategies.entries()) {
      const name = `vfb-r-${i + 1}`;
      const started = performance.now();
      await run(
        process.execPath,
        [
          cli,
          "create",
          "--name",
          name,
          "--memory",
          "768",
          "--disk",
          "size=4,backing=debian12",
          "--boot",
          "kernel=debian12,initrd=debian12,kernel_args=root=/dev/vda console=ttyS0",
          ...net,
          "--virt-type",
          "qemu",
          "--wait",
          ...wait,
          "--ready-timeout",
          "1800",
          "--json",
        ],
        { env, maxBuffer: 1 << 24 },
      );
      rows.push({ strategy: label, seconds: round((performance.now() - started) / 1000, 1) });
      await run(process.execPath, [cli, "destroy", name, "--wait", "--json"], { env, maxBuffer: 1 << 24 });
    }
  } finally {
    await client.close();
    worker.kill("SIGTERM");
    await new Promise((r) => worker.once("exit", r));
    await destroyDomains("vfb-r-");
    await run("ip", ["link", "del", bridge]).catch(() => undefined);
    await rm(storage, { recursive: true, force: true });
  }
  const base = rows[0]?.seconds ?? 1;
  results.readiness = Object.fromEntries(
    rows.map((r) => [r.strategy, { seconds: r.seconds, ratioToConsole: round(r.seconds / base, 3) }]),
  );
  table(
    "6. Create to ready, Debian 12 cloud guest under TCG, one at a time (ratio: to the console line)",
    rows.map((r) => ({ ...r, ratio: round(r.seconds / base, 3) })),
  );
}

/** 7. Warm pool claims (p50/p99, API request to answer) against create to ready, same template. */
async function claims(redis: LocalRedis): Promise<void> {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  try {
    const f = await claimLatency(redis, { repo, root: ROOT, images: IMAGES, prefix });
    results.claims = f;
    table("7. Warm pool claim (paused, ready) against create to ready, tiny TCG guest, through the API", [
      { what: `create to ready, p50 of ${f.creates}`, ms: f.createToReadyP50Ms, ratio: 1 },
      { what: `claim, p50 of ${f.claims}`, ms: f.claimP50Ms, ratio: f.ratioClaimToCreate },
      { what: `claim, p99 of ${f.claims}`, ms: f.claimP99Ms, ratio: round(f.claimP99Ms / f.createToReadyP50Ms, 4) },
    ]);
  } finally {
    await destroyDomains("vfb-c-");
    await destroyDomains("benchpool-");
  }
}

/** 9. The dashboard in a real browser: the 10,000-row VM table's first render; a worker's event to the page. */
async function dashboard(redis: LocalRedis): Promise<void> {
  const f = await dashboardBench(redis.url);
  results.dashboard = f;
  table("9. Dashboard in chromium (headless): VM table of 10,000 simulated VMs, worker event to the VM page", [
    { what: "VM table, 10,000 rows: mount to first painted rows", ms: f.vmTable10kFirstRenderMs },
    { what: `worker event to page, median of ${f.events}`, ms: f.eventToPageMs },
    { what: `worker event to page, max of ${f.events}`, ms: f.eventToPageMaxMs },
  ]);
}

async function main(): Promise<void> {
  const started = Date.now();
  await mkdir(ROOT, { recursive: true, mode: 0o755 });
  await run("bash", [path.join(repo, "deploy/build-test-guest.sh"), IMAGES]);
  const redis = await LocalRedis.start({ appendonly: false });
  const sectionSeconds: Record<string, number> = {};
  try {
    const only = process.env.BENCH_ONLY?.split(",");
    const sections: [string, () => Promise<void>][] = [
      ["control", () => controlPlane(redis)],
      ["latency", () => eventLatency(redis)],
      ["fleet", () => fleetScale(redis.url, results)],
      ["footprint", () => redisFootprint(redis)],
      ["disk", () => diskCreation()],
      ["throughput", () => hostThroughput(redis)],
      ["ready", () => readiness(redis)],
      ["claims", () => claims(redis)],
      ["dashboard", () => dashboard(redis)],
    ];
    for (const [name, fn] of sections) {
      if (only !== undefined && !only.includes(name)) continue;
      const t = Date.now();
      await fn();
      sectionSeconds[name] = Math.round((Date.now() - t) / 1000);
    }
  } finally {
    await redis.stop();
  }
  results.machine = {
    cpus: os.cpus().length,
    node: process.version,
    date: new Date().toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
    sectionSeconds,
  };
  const file = path.join(repo, "test/bench/results.json");
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  const took = Object.entries(sectionSeconds)
    .map(([name, sec]) => `${name} ${sec} s`)
    .join(", ");
  process.stdout.write(`\nwrote ${file} (${Math.round((Date.now() - started) / 1000)} s: ${took})\n`);
}

await main();
