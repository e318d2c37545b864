import { constants } from "node:fs";
import { access, mkdir, statfs } from "node:fs/promises";
import {
  ConsoleRequest,
  firstDisallowedNetwork,
  formatNetworkRef,
  type HostStatus,
  ImageFileRequest,
  isTerminal,
  JobData,
  MAX_REPORTED_ORPHANS,
  type NetworkAllowList,
  type NetworkSpec,
  type Phase,
  PowerRequest,
  ReconcileRequest,
  type ReconcileResult,
  toErrorInfo,
  toValidationError,
  VirtfleetError,
  type VirtType,
} from "@virtfleet/core";
import {
  BUNDLE_JOB_NAME,
  closeRedis,
  createRedis,
  type EventInput,
  EventLog,
  explainRedisError,
  FleetClient,
  HostRegistry,
  ImageCatalogue,
  Keys,
  queuedJobs,
  quietErrors,
  type RedisConfig,
  replyConsole,
  replyPower,
  reportRedisErrors,
  resolveRedisConfig,
  VmRegistry,
  vmOfJob,
} from "@virtfleet/fleet";
import {
  type CommandRunner,
  DEFAULT_QEMU_USER,
  ExecaRunner,
  HostPaths,
  type QemuOwner,
  resolveQemuOwner,
} from "@virtfleet/hypervisor";
import { type Job, Queue, UnrecoverableError, WaitingError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import pLimit, { type LimitFunction } from "p-limit";
import type { Logger } from "pino";
import { BundleRunner, type RunOutcome } from "./bundles/bundle-runner.js";
import { ConsoleTail } from "./console/console-tail.js";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_LIBVIRT_URI,
  DEFAULT_LOCK_MS,
  DEFAULT_MAX_STALLED,
  DEFAULT_OVERCOMMIT_CPU,
  DEFAULT_OVERCOMMIT_DISK,
  DEFAULT_OVERCOMMIT_MEMORY,
  DEFAULT_STALLED_INTERVAL_MS,
  DEFAULT_VIRT_TYPE,
} from "./defaults.js";
import { ensureFleetId } from "./fleet-identity.js";
import { HostMonitor } from "./host-monitor.js";
import { ImageCache } from "./images/image-cache.js";
import { Libvirt } from "./libvirt.js";
import { NameLocks } from "./name-locks.js";
import { PowerSwitch } from "./power/power-switch.js";
import { Provisioner, type ProvisionerTimeouts, type Report } from "./provisioner.js";
import { type ReconcileReport, Reconciler } from "./reconciler.js";

export interface HostAgentOptions {
  /** How to reach Redis (credentials, TLS): e.g. `redisConfigFromEnv()`. Either this or `redisUrl`. */
  redis?: RedisConfig;
  /** Redis URL: short for `redis: { url }`. */
  redisUrl?: string;
  /** Key prefix of the fleet. Default `virtfleet`. */
  prefix?: string;
  hostId: string;
  /** Default `qemu:///system`. */
  libvirtUri?: string;
  storageDir: string;
  imageDir: string;
  /** `auto` picks kvm when /dev/kvm can be used, else qemu (TCG). Default `auto`. */
  virtType?: VirtType | "auto";
  /** Jobs run at once on this host. Default 4. */
  concurrency?: number;
  labels?: Record<string, string>;
  /**
   * The networks this host offers to VMs, advertised in its status: placement puts no VM here that
   * names another, and a create job that names one anyway fails FORBIDDEN. Default: any network.
   */
  allowedNetworks?: NetworkAllowList;
  /**
   * The user libvirt runs QEMU as (`user` in qemu.conf): virtfleet's VMs run as it, with libvirt
   * changing the owner of no file, and each VM's own files are given to it. Default `libvirt-qemu`.
   */
  qemuUser?: string;
  /** QEMU's group. Default: the group named like the user, else the user's primary group. */
  qemuGroup?: string;
  /** Exactly the memory (MiB) this host offers to VMs; no ratio applied. Default: host memory × overcommit. */
  capacityMemoryMiB?: number;
  /** Exactly the vCPUs this host offers to VMs; no ratio applied. Default: host CPUs × overcommit. */
  capacityVcpus?: number;
  /** Memory overcommit ratio. Default 1.0. */
  overcommitMemory?: number;
  /** vCPU overcommit ratio. Default 4.0. */
  overcommitCpu?: number;
  /**
   * Disk overcommit ratio: the disk room (GiB) this host offers to VMs is its storage filesystem's
   * size times this. Default DEFAULT_OVERCOMMIT_DISK (1.0).
   */
  overcommitDisk?: number;
  logger: Logger;
  /** Heartbeat period; the status lives three periods. Default 5000 ms. */
  heartbeatMs?: number;
  /**
   * How long a running job's lock lives without renewal. A worker that dies holds its jobs this long
   * before another run picks them up. Default 30000 ms.
   */
  lockMs?: number;
  /** How often stalled jobs (of dead workers) are looked for. Default 15000 ms. */
  stalledIntervalMs?: number;
  /** How often one job may stall (its worker die) before it fails. Default 10. */
  maxStalledCount?: number;
  /** On close, how long running jobs may take before they are aborted and handed back. Default 60000 ms. */
  shutdownTimeoutMs?: number;
  runner?: CommandRunner;
  /**
   * Does the work of each job. Default: the Provisioner (qemu-img, virt-install, virsh). Benchmarks
   * put one here that does no subprocess work, to measure the control plane alone.
   */
  executor?: JobExecutor;
  timeouts?: Partial<ProvisionerTimeouts>;
  version?: string;
  /** Pulled images are evicted, least recently used first, when the image store passes this (bytes). Default: no limit. */
  imageCacheBytes?: number;
}

/** What runs a job's work on the host: the Provisioner, or a stand-in. */
export type JobExecutor = Pick<Provisioner, "create" | "destroy" | "rollback">;

/** The reason given to running jobs' abort signals when the worker shuts down. */
const SHUTDOWN = "shutdown";
/** The answer to a request that came before the worker started. */
type WorkerNotStarted = { error: { code: "INTERNAL"; message: string } };
const WORKER_NOT_STARTED: WorkerNotStarted = { error: { code: "INTERNAL", message: "worker not started" } };

/** Resolves `auto` to the virt type this host can run. */
export async function detectVirtType(requested: VirtType | "auto"): Promise<VirtType> {
  if (requested !== "auto") return requested;
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
    return "kvm";
  } catch {
    return "qemu";
  }
}

/**
 * The worker agent of one KVM host: takes the jobs of its host's queue, runs them through the
 * Provisioner, reports every phase, keeps the host's heartbeat, answers cancel requests, and on
 * start reconciles the host with what the fleet knows.
 */
export class HostAgent {
  readonly hostId: string;
  readonly keys: Keys;
  readonly #o: HostAgentOptions;
  readonly #logger: Logger;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #log: EventLog;
  readonly #hosts: HostRegistry;
  readonly #vms: VmRegistry;
  readonly #libvirt: Libvirt;
  readonly #paths: HostPaths;
  readonly #runner: CommandRunner;
  readonly #locks = new NameLocks();
  readonly #queue: Queue;
  /** For watching other hosts (when elected) and re-placing their jobs. */
  readonly #fleet: FleetClient;
  /** The fleet monitor's work (checkHosts, sweepPending), run while this worker holds the monitor lock. */
  readonly #monitor: HostMonitor;
  readonly #instance = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  #provisioner: JobExecutor | undefined;
  /** Pauses and resumes this fleet's VMs here (warm pools), once the fleet id is known. */
  #power: PowerSwitch | undefined;
  /** Reads the tails of this fleet's VMs' serial consoles here, once the fleet id is known. */
  #console: ConsoleTail | undefined;
  #worker: Worker | undefined;
  /** The worker's own connection (BullMQ does not close a connection it was given). */
  #workerRedis: Redis | undefined;
  readonly #queueRedis: Redis;
  #timers: NodeJS.Timeout[] = [];
  #status: HostStatus | undefined;
  #closing: Promise<void> | undefined;
  /** What the last reconciliation found. */
  lastReconcile: ReconcileReport | undefined;
  /** When this worker's Redis connection last came back (0: never lost). */
  #redisBackAt = 0;
  /** Reconciliations run because the Redis connection came back (a restart or a failover). */
  reconnectReconciles = 0;
  /** The fleet's identity, read at start. */
  #fleetId: string | undefined;
  /** Reconciliations run one at a time. */
  #reconciling: Promise<unknown> = Promise.resolve();
  /** The host's concurrency: every job, alone or in a bundle, runs holding one of these. */
  readonly #permits: LimitFunction;
  /** Runs bundles (many creates in one BullMQ job) job by job. */
  readonly #bundles: BundleRunner;
  /** Jobs this worker is running now (their #process promises). */
  readonly #running = new Set<Promise<unknown>>();
  /** This host's side of the image catalogue: pulls, file imports, eviction. */
  readonly images: ImageCache;
  readonly #catalogue: ImageCatalogue;

  constructor(options: HostAgentOptions) {
    this.#o = options;
    this.hostId = options.hostId;
    this.keys = new Keys(options.prefix);
    this.#logger = options.logger.child({ host: options.hostId });
    const redis = resolveRedisConfig(options);
    this.#redis = createRedis({ config: redis, connectionName: `virtfleet-worker:${options.hostId}` });
    // A refused password or an untrusted certificate: one clear line (never the secret), not silence.
    reportRedisErrors(this.#redis, (error) => this.#logger.error({ err: error }, `Redis: ${explainRedisError(error)}`));
    this.#subscriber = quietErrors(this.#redis.duplicate());
    this.#log = new EventLog(this.#redis, this.keys);
    this.#hosts = new HostRegistry(this.#redis, this.keys);
    this.#vms = new VmRegistry(this.#redis, this.keys);
    this.#runner = options.runner ?? new ExecaRunner({ logger: this.#logger });
    this.#libvirt = new Libvirt(this.#runner, options.libvirtUri ?? DEFAULT_LIBVIRT_URI);
    this.#paths = new HostPaths(options.storageDir, options.imageDir);
    this.#catalogue = new ImageCatalogue(this.#redis, this.keys);
    this.images = new ImageCache({
      paths: this.#paths,
      runner: this.#runner,
      catalogue: this.#catalogue,
      hostId: this.hostId,
      ...(options.imageCacheBytes === undefined ? {} : { limitBytes: options.imageCacheBytes }),
      warn: (message, error) => this.#logger.warn({ err: error }, message),
    });
    // BullMQ gets its own connection: it defines its scripts on it, which would make every pipeline
    // of ours dearer (ioredis copies defined scripts into each pipeline).
    this.#queueRedis = quietErrors(this.#redis.duplicate({ enableAutoPipelining: false }));
    this.#queue = new Queue(this.keys.hostQueue(this.hostId), {
      connection: this.#queueRedis,
      prefix: this.keys.prefix,
    });
    this.#queue.on("error", (error) => this.#logger.debug({ err: error }, "queue connection error"));
    this.#fleet = new FleetClient({
      redis,
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    });
    this.#monitor = new HostMonitor({ fleet: this.#fleet, redis: this.#redis });
    this.#permits = pLimit(options.concurrency ?? DEFAULT_CONCURRENCY);
    this.#bundles = new BundleRunner({
      run: (data, attempt, signal) => this.#runJob(data, attempt, signal),
      permits: this.#permits,
      isShutdown: (reason) => reason === SHUTDOWN,
      logger: this.#logger,
    });
  }

  async start(): Promise<void> {
    const o = this.#o;
    await mkdir(this.#paths.storageDir, { recursive: true, mode: 0o755 });
    const virtType = await detectVirtType(o.virtType ?? DEFAULT_VIRT_TYPE);
    let node: { cpus: number; memoryMiB: number };
    try {
      node = await this.#libvirt.nodeinfo({ timeoutMs: 15_000 });
    } catch (error) {
      throw new VirtfleetError(
        "LIBVIRT_UNAVAILABLE",
        `cannot reach libvirt at ${this.#libvirt.uri}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const fleetId = await ensureFleetId(this.#redis, this.keys);
    this.#fleetId = fleetId;
    this.#power = new PowerSwitch({ libvirt: this.#libvirt, hostId: this.hostId, fleetId, logger: this.#logger });
    this.#console = new ConsoleTail({
      libvirt: this.#libvirt,
      paths: this.#paths,
      hostId: this.hostId,
      fleetId,
      logger: this.#logger,
    });
    let qemuOwner: QemuOwner | undefined;
    if (o.executor !== undefined) {
      this.#provisioner = o.executor;
    } else {
      qemuOwner = await resolveQemuOwner(this.#runner, o.qemuUser ?? DEFAULT_QEMU_USER, o.qemuGroup);
      this.#provisioner = new Provisioner({
        libvirt: this.#libvirt,
        runner: this.#runner,
        paths: this.#paths,
        hostId: this.hostId,
        fleetId,
        isDead: async (marker) => {
          if (marker.fleet !== fleetId) return false;
          const phase = (await this.#log.getJob(marker.job))?.phase;
          return phase === "failed" || phase === "cancelled";
        },
        defaultVirtType: virtType,
        qemuOwner,
        images: this.images,
        ...(o.timeouts === undefined ? {} : { timeouts: o.timeouts }),
      });
    }
    this.#status = {
      hostId: this.hostId,
      version: o.version ?? "0.1.0",
      startedAt: new Date().toISOString(),
      heartbeatAt: new Date().toISOString(),
      libvirtUri: this.#libvirt.uri,
      virtTypes: virtType === "kvm" ? ["kvm", "qemu"] : ["qemu"],
      defaultVirtType: virtType,
      concurrency: o.concurrency ?? DEFAULT_CONCURRENCY,
      memoryMiB: {
        total: node.memoryMiB,
        capacity: o.capacityMemoryMiB ?? Math.floor(node.memoryMiB * (o.overcommitMemory ?? DEFAULT_OVERCOMMIT_MEMORY)),
      },
      vcpus: {
        total: node.cpus,
        capacity: o.capacityVcpus ?? Math.floor(node.cpus * (o.overcommitCpu ?? DEFAULT_OVERCOMMIT_CPU)),
      },
      diskFreeGiB: 0,
      runningVms: 0,
      images: [],
      labels: o.labels ?? {},
      draining: false,
      ...(o.allowedNetworks === undefined ? {} : { networks: o.allowedNetworks.map(formatNetworkRef) }),
      orphans: [],
    };

    this.lastReconcile = await this.reconcile();
    this.#reconcileAfterReconnects();
    await this.images
      .sync()
      .catch((error: unknown) => this.#logger.warn({ err: error }, "image catalogue sync failed"));

    const cancelChannel = this.keys.cancelChannel(this.hostId);
    const reconcileChannel = this.keys.reconcileChannel(this.hostId);
    const imageChannel = this.keys.imageChannel(this.hostId);
    const powerChannel = this.keys.powerChannel(this.hostId);
    const consoleChannel = this.keys.consoleChannel(this.hostId);
    await this.#subscriber.subscribe(cancelChannel, reconcileChannel, imageChannel, powerChannel, consoleChannel);
    this.#subscriber.on("message", (channel: string, message: string) => {
      if (channel === cancelChannel) {
        const found =
          (this.#worker?.cancelJob(message, "cancelled") ?? false) || this.#bundles.cancel(message, "cancelled");
        this.#logger.info({ jobId: message, found }, "cancel request");
      } else if (channel === reconcileChannel) {
        void this.#answerReconcile(message);
      } else if (channel === imageChannel) {
        void this.#answerImageFile(message);
      } else if (channel === powerChannel) {
        const power = this.#power;
        void this.#answerAtOnce("power", message, PowerRequest, power && ((r) => power.apply(r)), replyPower);
      } else if (channel === consoleChannel) {
        const reader = this.#console;
        void this.#answerAtOnce("console", message, ConsoleRequest, reader && ((r) => reader.read(r)), replyConsole);
      }
    });

    await this.#redis.del(this.keys.hostDown(this.hostId));
    await this.#beat();
    const period = o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.#every(period, () => this.#beat(), "heartbeat");
    this.#every(period, () => this.#watchFleet(period * 3), "fleet watch");
    this.#every(Math.max(period * 2, 5000), () => this.#sweepFailed(), "failed-job sweep");

    const lockMs = o.lockMs ?? DEFAULT_LOCK_MS;
    this.#workerRedis = quietErrors(this.#redis.duplicate({ enableAutoPipelining: false }));
    this.#worker = new Worker(
      this.keys.hostQueue(this.hostId),
      (job, token, signal) => this.#track(this.#process(job, token, signal)),
      {
        connection: this.#workerRedis,
        prefix: this.keys.prefix,
        concurrency: o.concurrency ?? DEFAULT_CONCURRENCY,
        autorun: false,
        lockDuration: lockMs,
        lockRenewTime: Math.floor(lockMs / 2),
        stalledInterval: o.stalledIntervalMs ?? DEFAULT_STALLED_INTERVAL_MS,
        maxStalledCount: o.maxStalledCount ?? DEFAULT_MAX_STALLED,
      },
    );
    this.#worker.on("error", (error) => this.#logger.error({ err: error }, "worker error"));
    this.#worker.on("stalled", (jobId) =>
      this.#logger.warn({ jobId }, "job stalled (its worker died); running it again"),
    );
    void this.#worker.run().catch((error: unknown) => this.#logger.error({ err: error }, "worker stopped"));
    await this.#worker.waitUntilReady();
    this.#logger.info(
      {
        virtType,
        concurrency: o.concurrency ?? DEFAULT_CONCURRENCY,
        storageDir: this.#paths.storageDir,
        imageDir: this.#paths.imageDir,
        ...(qemuOwner === undefined ? {} : { qemu: `${qemuOwner.user}:${qemuOwner.group}` }),
        networks: o.allowedNetworks === undefined ? "any" : o.allowedNetworks.map(formatNetworkRef),
      },
      "worker started",
    );
  }

  /**
   * After Redis comes back — a restart, or a Sentinel failover to a replica that may lack the last
   * writes made before the master died — the host is reconciled against the records again: each
   * domain is checked against the jobs and VM records the new master holds (what nothing accounts
   * for is reported, what is proven dead removed), VM records without a domain are forgotten, room
   * nobody holds is given back. Jobs whose BullMQ state went back in time are taken again by the
   * stalled-job check and resumed under the per-name lock (the provisioner adopts what it made), so
   * nothing runs twice at once and nothing is left orphaned. Counted in `reconnectReconciles`.
   */
  #reconcileAfterReconnects(): void {
    this.#redis.on("ready", () => {
      if (this.#closing !== undefined) return;
      this.#redisBackAt = Date.now();
      // Beat at once: the heartbeat may have expired on the new master during the outage.
      this.#beat().catch((error: unknown) => this.#logger.warn({ err: error }, "heartbeat failed"));
      this.reconnectReconciles++;
      this.#logger.warn("Redis is back (a restart or a Sentinel failover): reconciling the host with the records");
      this.reconcile().catch((error: unknown) =>
        this.#logger.warn({ err: error }, "reconcile after a Redis reconnect failed"),
      );
    });
  }

  #every(ms: number, fn: () => Promise<unknown>, what: string): void {
    const timer = setInterval(() => {
      fn().catch((error: unknown) => this.#logger.warn({ err: error }, `${what} failed`));
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }

  /**
   * Brings the host in line with the fleet: removes what virtfleet made here and can prove dead (this
   * fleet's, its job failed or was cancelled), reports the rest nothing accounts for as orphans (a
   * warn line each, and the host's status); with `deleteOrphans`, removes those too. One at a time.
   */
  reconcile(options: { deleteOrphans?: boolean } = {}): Promise<ReconcileReport> {
    const run = this.#reconciling.then(() => this.#reconcile(options.deleteOrphans ?? false));
    this.#reconciling = run.catch(() => undefined);
    return run;
  }

  async #reconcile(deleteOrphans: boolean): Promise<ReconcileReport> {
    const fleetId = this.#fleetId;
    if (fleetId === undefined) throw new Error("agent not started");
    let knownVms = new Set<string>();
    let liveJobVms = new Set<string>();
    const accounting = async () => {
      liveJobVms = new Set<string>();
      const jobs = await this.#queue.getJobs(["active", "waiting", "delayed", "prioritized"]);
      for (const data of jobs.flatMap((job) => (job === undefined ? [] : queuedJobs(job).jobs))) {
        const record = await this.#log.getJob(data.jobId);
        if (record !== undefined && isTerminal(record.phase)) continue; // e.g. failed HOST_LOST while this host was away
        liveJobVms.add(vmOfJob(data));
      }
      knownVms = new Set(
        (await this.#vms.list()).filter((v) => v.hostId === this.hostId && v.state !== "failed").map((v) => v.name),
      );
      return { liveJobVms, knownVms };
    };
    const report = await new Reconciler(this.#libvirt, this.#paths, this.hostId, this.#logger).run({
      accounting,
      fleetId,
      jobPhase: async (jobId) => (await this.#log.getJob(jobId))?.phase,
      deleteOrphans,
      lock: (vm) => this.#locks.acquire(vm),
    });
    for (const vm of report.missingVms) {
      this.#logger.warn({ vm }, "reconcile: the fleet lists this VM here but it has no domain; forgetting it");
      await this.#vms.forget(vm);
    }
    // Room held for VMs that are neither known here nor being made gives itself back.
    for (const vm of await this.#vms.ledger.claimants(this.hostId)) {
      if (knownVms.has(vm) && !report.missingVms.includes(vm)) continue;
      if (liveJobVms.has(vm)) continue;
      const record = await this.#vms.get(vm);
      if (record !== undefined && record.hostId === this.hostId) continue;
      await this.#vms.ledger.release(this.hostId, vm);
      this.#logger.warn({ vm }, "reconcile: released room no VM holds");
    }
    this.lastReconcile = report;
    if (this.#status !== undefined) this.#status.orphans = report.orphans.slice(0, MAX_REPORTED_ORPHANS);
    this.#logger.info(
      {
        fleet: fleetId,
        removed: report.removed.length,
        orphans: report.orphans.length,
        missingVms: report.missingVms.length,
        deleteOrphans,
      },
      "reconciled host",
    );
    return report;
  }

  /** A request from a channel (JSON), or undefined after logging why it is dropped. */
  #parseRequest<Request>(
    what: string,
    message: string,
    schema: { parse: (data: unknown) => Request },
  ): Request | undefined {
    try {
      return schema.parse(JSON.parse(message));
    } catch (error) {
      this.#logger.warn({ err: error }, `ignoring a bad ${what} request`);
      return undefined;
    }
  }

  /** An operator's reconcile request (`virtfleet hosts reconcile`): reconcile, then answer it. */
  async #answerReconcile(message: string): Promise<void> {
    const request = this.#parseRequest("reconcile", message, ReconcileRequest);
    if (request === undefined) return;
    this.#logger.info({ request: request.id, deleteOrphans: request.deleteOrphans }, "reconcile request");
    let result: ReconcileResult;
    try {
      const report = await this.reconcile({ deleteOrphans: request.deleteOrphans });
      await this.#beat();
      result = { hostId: this.hostId, removed: report.removed, orphans: report.orphans };
    } catch (error) {
      const info = toErrorInfo(error);
      this.#logger.error({ err: error }, "reconcile request failed");
      result = { hostId: this.hostId, removed: [], orphans: [], error: { code: info.code, message: info.message } };
    }
    await this.#hosts.replyReconcile(request.id, result).catch((error: unknown) => {
      this.#logger.warn({ err: error }, "could not answer a reconcile request");
    });
  }

  /**
   * A request answered at once (power: a warm pool pausing a ready VM, a claim resuming it; console:
   * `GET /v1/vms/{name}/console`): parse it (a bad one is logged and dropped), let `handle` answer it
   * (INTERNAL before the worker started), push the answer to its asker (see HostRpc of @virtfleet/fleet).
   */
  async #answerAtOnce<Request extends { id: string }, Result>(
    what: string,
    message: string,
    schema: { parse: (data: unknown) => Request },
    handle: ((request: Request) => Promise<Result>) | undefined,
    reply: (redis: Redis, keys: Keys, requestId: string, result: Result | WorkerNotStarted) => Promise<void>,
  ): Promise<void> {
    const request = this.#parseRequest(what, message, schema);
    if (request === undefined) return;
    const result = handle === undefined ? WORKER_NOT_STARTED : await handle(request);
    await reply(this.#redis, this.keys, request.id, result).catch((error: unknown) => {
      this.#logger.warn({ err: error }, `could not answer a ${what} request`);
    });
  }

  /** An operator's file import (`virtfleet images import --file --host`): checksum, register, answer. */
  async #answerImageFile(message: string): Promise<void> {
    const request = this.#parseRequest("image import", message, ImageFileRequest);
    if (request === undefined) return;
    this.#logger.info({ request: request.id, image: request.name, file: request.path }, "image import request");
    const result = await this.images.importFile(request);
    if (result.error !== undefined) this.#logger.warn({ error: result.error }, "image import failed");
    await this.#beat().catch(() => undefined);
    await this.#catalogue.replyFile(request.id, result).catch((error: unknown) => {
      this.#logger.warn({ err: error }, "could not answer an image import request");
    });
  }

  async #beat(): Promise<void> {
    const status = this.#status;
    if (status === undefined) return;
    const [fs, images, vms] = await Promise.all([
      statfs(this.#paths.storageDir).catch(() => undefined),
      this.#paths.listImages(),
      this.#paths.listVmDirs(),
    ]);
    status.heartbeatAt = new Date().toISOString();
    status.diskFreeGiB = fs === undefined ? 0 : Math.floor((fs.bavail * fs.bsize) / 2 ** 30);
    status.images = images;
    status.runningVms = vms.length;
    // The storage filesystem's size, not what is free: the VMs' claims already count what they will use.
    const diskGiB =
      fs === undefined
        ? undefined
        : Math.floor(((fs.blocks * fs.bsize) / 2 ** 30) * (this.#o.overcommitDisk ?? DEFAULT_OVERCOMMIT_DISK));
    await this.#vms.ledger.setCapacity(this.hostId, status.memoryMiB.capacity, status.vcpus.capacity, diskGiB);
    await this.#hosts.heartbeat(status, (this.#o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS) * 3);
  }

  /** One worker of the fleet at a time (a lock in Redis) deals with hosts whose heartbeat expired. */
  async #watchFleet(lockMs: number): Promise<void> {
    // Right after Redis came back (a restart, a failover), no host could beat while it was away:
    // give every host the time of one heartbeat TTL to beat again before judging any of them lost.
    if (Date.now() - this.#redisBackAt < lockMs) return;
    const key = this.keys.monitorLock();
    const got =
      (await this.#redis.set(key, this.#instance, "PX", lockMs, "NX")) !== null ||
      ((await this.#redis.get(key)) === this.#instance && (await this.#redis.pexpire(key, lockMs)) === 1);
    if (!got) return;
    const lost = await this.#monitor.checkHosts();
    const ghosts = await this.#monitor.sweepPending();
    if (ghosts.length > 0)
      this.#logger.warn(
        { jobs: ghosts },
        "create jobs admitted but never enqueued were failed; their room was given back",
      );
    if (lost.length > 0)
      this.#logger.warn(
        { hosts: lost },
        "hosts lost: their waiting jobs were re-placed, running ones failed HOST_LOST",
      );
  }

  /** Jobs BullMQ failed on its own (stalled too often), alone or in a bundle, get their terminal event. */
  async #sweepFailed(): Promise<void> {
    const failed = await this.#queue.getFailed(0, 99);
    const ended: { jobId: string; reason: string }[] = [];
    for (const job of failed) {
      if (job?.id === undefined) continue;
      const reason = job.failedReason ?? "failed";
      const ids = job.name === BUNDLE_JOB_NAME ? queuedJobs(job).jobs.map((d) => d.jobId) : [job.id];
      for (const jobId of ids) ended.push({ jobId, reason });
    }
    for (const { jobId, reason } of ended) {
      const record = await this.#log.getJob(jobId);
      if (record === undefined || isTerminal(record.phase)) continue;
      await this.#log.append({
        jobId,
        kind: record.kind,
        vm: record.vm,
        batchId: record.batchId ?? "",
        phase: "failed",
        host: this.hostId,
        message: reason,
        error: { code: "INTERNAL", message: reason },
      });
      if (record.kind === "create") await this.#forgetVm(record.vm, jobId);
    }
  }

  /**
   * A BullMQ job of this host's queue: a bundle (its jobs run by the BundleRunner), or one job, run
   * holding one of the host's permits.
   */
  async #process(job: Job, token: string | undefined, signal?: AbortSignal): Promise<void> {
    if (job.name === BUNDLE_JOB_NAME) return this.#bundles.run(job, token, signal);
    const parsed = JobData.safeParse(job.data);
    if (!parsed.success) {
      const error = toValidationError(parsed.error, "job");
      this.#logger.error({ jobId: job.id, err: error }, "bad job payload");
      throw new UnrecoverableError(`INVALID_SPEC: ${error.message}`);
    }
    const attempt = { made: job.attemptsMade, of: job.opts.attempts ?? 1 };
    const result = await this.#permits(() => this.#runJob(parsed.data, attempt, signal));
    switch (result.outcome) {
      case "ended":
        return;
      case "final":
        throw new UnrecoverableError(result.reason);
      case "handBack":
        // What the job made is kept (the next run adopts it); it goes back to the queue for the next worker.
        await job.moveToWait(token);
        throw new WaitingError();
      case "retry":
        throw result.error;
    }
  }

  /**
   * One run of a job (attempt `attempt.made + 1` of `attempt.of`), alone or in a bundle: its phases,
   * events and records; what it came to says how its BullMQ job goes on.
   */
  async #runJob(data: JobData, attempt: { made: number; of: number }, signal?: AbortSignal): Promise<RunOutcome> {
    // Handed back before it started (the worker is shutting down): nothing was done.
    if (signal?.aborted && signal.reason === SHUTDOWN) return { outcome: "handBack" };
    const vm = vmOfJob(data);
    // The job's logger, made when first used: a child logger serialises its bindings when made, which
    // is most of what a job costs this process when nothing is logged at its level.
    let child: Logger | undefined;
    const log = () => (child ??= this.#logger.child({ jobId: data.jobId, vm, kind: data.kind }));
    const logPhases = this.#logger.isLevelEnabled("info");
    const append = (
      phase: Phase,
      message: string,
      extra: Pick<EventInput, "error" | "unlessCancelled" | "vmState" | "addresses"> = {},
    ) => {
      if (logPhases) log().info({ phase, ...(extra.error === undefined ? {} : { code: extra.error.code }) }, message);
      return this.#log.append({ jobId: data.jobId, kind: data.kind, vm, phase, message, host: this.hostId, ...extra });
    };
    // Between phases: a cancel request that arrived while no signal could carry it stops the job here
    // (checked in the same script that appends the event).
    // The guest's addresses, once known: on the `guest.ready` event, and on the VM's record with `done`.
    let addresses: string[] | undefined;
    const report: Report = async (phase, message, _error, detail) => {
      if (detail?.addresses !== undefined) addresses = detail.addresses;
      const id = await append(phase, message, {
        unlessCancelled: data.kind === "create",
        ...(detail?.addresses === undefined ? {} : { addresses: detail.addresses }),
      });
      // The job was ended while it ran (cancelled before its first event, its host judged lost):
      // a create stops here and rolls back what it made.
      if (id === undefined && data.kind === "create")
        throw new VirtfleetError("CANCELLED", "the job was ended while it ran; what it made is removed");
    };
    // A job that already ended is not run again. Read before waiting for the VM's lock only when
    // someone holds it (an ended job then does not wait); the read under the lock is the one that counts.
    if (this.#locks.held(vm)) {
      const current = await this.#log.progress(data.jobId);
      if (current.phase !== undefined && isTerminal(current.phase)) {
        log().info({ phase: current.phase }, "job already ended; skipping");
        return { outcome: "ended" };
      }
    }
    const provisioner = this.#provisioner;
    if (provisioner === undefined) throw new Error("agent not started");
    const release = await this.#locks.acquire(vm);
    try {
      // Another run of this same job may have held the name lock meanwhile: BullMQ runs a job again
      // when its lock is lost (a Redis failover longer than the lock, a stalled check) while the first
      // run still works. That run ended it: this one must neither redo nor undo anything.
      const now = await this.#log.progress(data.jobId);
      if (now.phase !== undefined && isTerminal(now.phase)) {
        log().info({ phase: now.phase }, "job already ended; skipping");
        return { outcome: "ended" };
      }
      if (data.kind === "create") {
        // Placement sends no such job here; one that comes anyway (an old producer, a hand-made
        // payload, a list changed since) is refused before anything is made or touched.
        const i = firstDisallowedNetwork(this.#o.allowedNetworks, data.spec.networks);
        if (i !== undefined) {
          const error = new VirtfleetError(
            "FORBIDDEN",
            `host ${this.hostId} does not offer the network ${formatNetworkRef(data.spec.networks[i] as NetworkSpec)}`,
            { field: `spec.networks.${i}` },
          );
          await append("failed", `${error.code}: ${error.message}`, { error: error.toInfo() });
          await this.#forgetVm(vm, data.jobId);
          return { outcome: "final", reason: `${error.code}: ${error.message}` };
        }
      }
      if (data.kind === "create") {
        if (now.cancelRequested) throw new VirtfleetError("CANCELLED", "cancelled by request");
        await provisioner.create(data, report, signal);
        // The VM is marked running in the same step as the `done` event, unless the fleet gave up on
        // this job while it ran (HOST_LOST): then what it made must go.
        const id = await append("done", `VM ${vm} is running on ${this.hostId}`, {
          vmState: { key: this.keys.vm(vm), state: "running", ...(addresses === undefined ? {} : { addresses }) },
        });
        if (id === undefined) {
          // Ended by another run of this same job (done): what it made is the VM; keep it.
          if ((await this.#log.progress(data.jobId)).phase === "done") {
            log().warn("job already done by another run of it; keeping the VM");
            return { outcome: "ended" };
          }
          log().warn("job ended elsewhere while it ran; rolling back");
          await provisioner.rollback(vm, data.jobId);
          return { outcome: "ended" };
        }
      } else {
        await provisioner.destroy(data, report, signal);
        await this.#vms.forget(vm);
        await append("done", `VM ${vm} destroyed`);
      }
      return { outcome: "ended" };
    } catch (error) {
      const info = toErrorInfo(error);
      const final = !(signal?.aborted && signal.reason === SHUTDOWN);
      if (data.kind === "create" && final) {
        // Whatever any attempt of this job made (an earlier one may have died mid-way) goes.
        await provisioner.rollback(vm, data.jobId).catch((e: unknown) => log().error({ err: e }, "rollback failed"));
      }
      if (!final) {
        // What the job made is rolled back; it goes back to the queue for the next worker.
        await append("queued", "handed back: the worker is shutting down");
        return { outcome: "handBack" };
      }
      if (signal?.aborted || info.code === "CANCELLED") {
        await append("cancelled", "cancelled; what the job made was removed", {
          error: { ...info, code: "CANCELLED" },
        });
        if (data.kind === "create") await this.#forgetVm(vm, data.jobId);
        return { outcome: "final", reason: `CANCELLED: ${info.message}` };
      }
      const retryable = error instanceof VirtfleetError ? error.retryable : true;
      const attempts = attempt.of;
      if (!retryable || attempt.made + 1 >= attempts) {
        await append("failed", `${info.code}: ${info.message}`, { error: info });
        if (data.kind === "create") await this.#forgetVm(vm, data.jobId);
        else if ((await this.#vms.get(vm))?.state === "destroying") await this.#vms.setState(vm, "running");
        return { outcome: "final", reason: `${info.code}: ${info.message}` };
      }
      log().warn({ code: info.code, attempt: attempt.made + 1, attempts, err: error }, "attempt failed; will retry");
      await append(
        "queued",
        `attempt ${attempt.made + 1} of ${attempts} failed (${info.code}: ${info.message}); retrying`,
      );
      return { outcome: "retry", error };
    } finally {
      release();
    }
  }

  /** Counts a job as running on this worker until it settles. */
  #track<T>(work: Promise<T>): Promise<T> {
    this.#running.add(work);
    const done = () => this.#running.delete(work);
    work.then(done, done);
    return work;
  }

  async #forgetVm(name: string, jobId: string): Promise<void> {
    await this.#vms.forget(name, jobId);
  }

  /**
   * Stops taking jobs and lets running ones finish; past the shutdown deadline, aborts them (each
   * rolls back and goes back to the queue, given SHUTDOWN_GRACE_MS more). Closes connections. Every
   * step is bounded, so the whole takes at most about deadline + grace whether or not Redis answers:
   * what Redis did not take by then is given up (a job it did not see handed back is picked up again
   * once its lock expires). Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const t of this.#timers) clearInterval(t);
      const worker = this.#worker;
      const deadline = this.#o.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
      const started = Date.now();
      const giveUpAt = started + deadline + SHUTDOWN_GRACE_MS;
      // Once a Redis step has hung, the others are not waited for.
      let redisStuck = false;
      const redisStep = (ms: number) => () => (redisStuck || this.#redis.status !== "ready" ? 0 : ms);
      const steps: [string, () => number, () => Promise<unknown>][] = [
        [
          "host status (draining)",
          redisStep(REDIS_STEP_MS),
          async () => {
            // Nothing new is placed here while running jobs finish.
            if (this.#status !== undefined) this.#status.draining = true;
            await this.#beat();
          },
        ],
        [
          "worker",
          () => giveUpAt - Date.now(),
          async () => {
            if (worker === undefined) return;
            const closing = worker.close();
            const timer = setTimeout(() => {
              this.#logger.warn({ deadlineMs: deadline }, "shutdown deadline passed: handing running jobs back");
              worker.cancelAllJobs(SHUTDOWN);
            }, deadline);
            // With no job of ours running, what is left of the worker's close is Redis's to answer.
            const idle = async () => {
              while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
              await sleep(REDIS_STEP_MS);
            };
            try {
              await Promise.race([closing, idle()]);
            } finally {
              clearTimeout(timer);
            }
          },
        ],
        ["host status (down)", redisStep(REDIS_STEP_MS), () => this.#hosts.markDown(this.hostId)],
        [
          "connections",
          redisStep(REDIS_STEP_MS),
          () =>
            Promise.all([
              this.#queue.close(),
              this.#fleet.close(),
              closeRedis(this.#subscriber),
              this.#workerRedis && closeRedis(this.#workerRedis),
              closeRedis(this.#queueRedis),
              closeRedis(this.#redis),
            ]),
        ],
      ];
      for (const [what, ms, step] of steps) {
        const outcome = await within(step(), Math.min(ms(), Math.max(0, giveUpAt - Date.now())));
        if (outcome.ok) continue;
        if (outcome.timedOut) {
          redisStuck = true;
          this.#logger.warn({ afterMs: Date.now() - started }, `closing ${what}: no answer in time; giving up on it`);
        } else {
          this.#logger.warn({ err: outcome.error }, `closing ${what} failed`);
        }
      }
      // Whatever did not close in time is cut.
      for (const r of [this.#subscriber, this.#workerRedis, this.#queueRedis, this.#redis]) r?.disconnect();
      this.#logger.info("worker stopped");
    })();
    return this.#closing;
  }
}

/** After the shutdown deadline, running jobs get this long to roll back and be handed back. */
export const SHUTDOWN_GRACE_MS = 5000;
/** Default shutdown deadline (VIRTFLEET_SHUTDOWN_TIMEOUT_MS). */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 60_000;
/** How long one Redis write or close may take while the worker stops. */
const REDIS_STEP_MS = 2000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Waits for `work` at most `ms`; never throws. */
async function within(
  work: Promise<unknown>,
  ms: number,
): Promise<{ ok: true } | { ok: false; timedOut: true } | { ok: false; timedOut: false; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((r) => {
    timer = setTimeout(() => r("late"), ms);
  });
  try {
    const first = await Promise.race([work.then(() => "done" as const), late]);
    return first === "done" ? { ok: true } : { ok: false, timedOut: true };
  } catch (error) {
    return { ok: false, timedOut: false, error };
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}
