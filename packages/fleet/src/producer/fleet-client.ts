import { randomUUID } from "node:crypto";
import {
  type CreateJobData,
  DestroyJobData,
  type ErrorInfo,
  type GuestReadyInput,
  GuestReadyOptions,
  HostId,
  isTerminal,
  JobData,
  JobId,
  PlacementOptions,
  parseOrThrow,
  type StreamedEvent,
  specFingerprint,
  type TerminalPhase,
  toErrorInfo,
  totalDiskGiB,
  VirtfleetError,
  VmName,
  VmSpec,
  WaitForCapacityMs,
} from "@virtfleet/core";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { Admission, type AdmitOutcome } from "../admission/admission.js";
import type { QuotaLimits } from "../admission/quota.js";
import { HostRegistry, type HostView } from "../hosts/host-registry.js";
import { ImageCatalogue } from "../images/image-catalogue.js";
import type { HostCandidate } from "../placement/eligibility.js";
import { DEFAULT_PLACEMENT_CACHE_MS, Placer } from "../placement/placer.js";
import { type BatchItemResult, BatchStore } from "../records/batches.js";
import { EventLog } from "../records/event-log.js";
import { JobHandle } from "../records/job-handle.js";
import { PENDING_JOB_TIMEOUT_MS, PendingJobs } from "../records/pending-jobs.js";
import { type VmRecord, VmRegistry } from "../records/vm-registry.js";
import { closeRedis, createRedis, quietErrors } from "../redis/connection.js";
import { Keys } from "../redis/keys.js";
import { describeRedis, type RedisConfig, resolveRedisConfig } from "../redis/redis-config.js";
import { explainRedisError, isRedisAuthError } from "../redis/redis-errors.js";

export interface FleetClientOptions {
  /** How to reach Redis (credentials, TLS): e.g. `redisConfigFromEnv()`. Either this or `redisUrl`. */
  redis?: RedisConfig;
  /** Redis URL: short for `redis: { url }`. */
  redisUrl?: string;
  /** Key prefix shared by every part of one fleet. Default `virtfleet`. */
  prefix?: string;
  /** How long placement may reuse the hosts list. Default 1000 ms; 0 reads it for every request. */
  placementCacheMs?: number;
}

export interface CreateOptions {
  /** Pin the VM to this host. */
  host?: string;
  /** Only hosts with all these labels. */
  labels?: Record<string, string>;
  /** Anti-affinity group: its VMs go to different hosts where possible. */
  group?: string;
  /** `spread` (default) or `pack`. */
  policy?: "spread" | "pack";
  /** When no host has room, keep trying this long before NO_CAPACITY. Default 0. */
  waitForCapacityMs?: number;
  /** The API tenant that will own the VM; its quota is enforced at admission. */
  tenant?: string;
  quota?: QuotaLimits;
  /** Batches the tenant may keep stored at once. Default DEFAULT_MAX_BATCHES_PER_TENANT. */
  maxBatches?: number;
  /** Set by createBatch. */
  batchId?: string;
  /** Terminal events are POSTed here (by the API's webhook dispatcher). */
  callbackUrl?: string;
  /**
   * Wait until the guest is ready (`true`: its console prints VIRTFLEET_READY): by `strategy`
   * (`console`, `agent`, `ip`, `cloud-init`) within `timeoutSec` (a default per strategy).
   */
  guestReady?: GuestReadyInput | boolean;
}

export interface DestroyOptions {
  /** The host to destroy on when the fleet does not know the VM. */
  host?: string;
  /** Only a VM of this tenant (others are VM_NOT_FOUND). */
  tenant?: string;
  callbackUrl?: string;
}

export type { BatchItemResult } from "../records/batches.js";

/** Options of one item of a batch that differ from the batch's own (e.g. each lab VM's template). */
export interface BatchItemOptions {
  /** This item's readiness wait, instead of the batch's `guestReady`. */
  guestReady?: GuestReadyInput | boolean;
}

/** A create's placement and guest-ready options, parsed. */
interface ParsedOptions {
  placement: PlacementOptions;
  guestReady: GuestReadyOptions | undefined;
}

/** An admitted create: the job to enqueue, or the earlier job of the same VM (to enqueue again when pending). */
type Admitted = { data: CreateJobData } | { jobId: string; requeue?: CreateJobData };

function jobIdOf(a: Admitted): string {
  return "data" in a ? a.data.jobId : a.jobId;
}

/** The default job options: retry transient failures with exponential backoff. */
export const JOB_ATTEMPTS = 5;
const JOB_BACKOFF_MS = 2000;

/** The producer's side of the fleet: create and destroy VMs, follow jobs. Used by the CLI and the API. */
export class FleetClient {
  readonly keys: Keys;
  readonly hosts: HostRegistry;
  readonly vms: VmRegistry;
  readonly log: EventLog;
  /** The fleet-wide image catalogue. */
  readonly images: ImageCatalogue;
  readonly #admission: Admission;
  readonly #pending: PendingJobs;
  readonly #batches: BatchStore;
  readonly #redis: Redis;
  /**
   * BullMQ's connection. Kept apart from ours: BullMQ defines its ~50 scripts on the connection it
   * is given, and ioredis copies every defined script into each pipeline it builds, which made each
   * of our own pipelines (one per auto-pipelined tick or MULTI) several times dearer.
   */
  #bullRedis: Redis | undefined;
  readonly #queues = new Map<string, Queue>();
  #closing: Promise<void> | undefined;
  /** Where VMs go: the hosts list, eligibility, and the claim (see placement/placer.ts). */
  readonly placer: Placer;

  /** Where Redis is, for messages (never the credentials). */
  readonly #url: string;
  /** The last connection error, to say why Redis does not answer. */
  #lastError: Error | undefined;

  constructor(options: FleetClientOptions) {
    const config = resolveRedisConfig(options);
    this.#url = describeRedis(config);
    this.keys = new Keys(options.prefix);
    this.#redis = createRedis({
      config,
      connectionName: "virtfleet-client",
      onError: (error) => {
        this.#lastError = error;
      },
    });
    this.#redis.on("ready", () => {
      this.#lastError = undefined;
    });
    this.hosts = new HostRegistry(this.#redis, this.keys);
    this.vms = new VmRegistry(this.#redis, this.keys);
    this.log = new EventLog(this.#redis, this.keys);
    this.images = new ImageCatalogue(this.#redis, this.keys);
    this.#admission = new Admission(this.#redis, this.keys);
    this.#pending = new PendingJobs(this.#redis, this.keys);
    this.#batches = new BatchStore(this.#redis, this.keys);
    this.placer = new Placer({
      hosts: this.hosts,
      images: this.images,
      vms: this.vms,
      cacheMs: options.placementCacheMs ?? DEFAULT_PLACEMENT_CACHE_MS,
    });
  }

  #queue(hostId: string): Queue {
    let queue = this.#queues.get(hostId);
    if (queue === undefined) {
      this.#bullRedis ??= quietErrors(
        this.#redis.duplicate({ connectionName: "virtfleet-client-queue", enableAutoPipelining: false }),
      );
      queue = new Queue(this.keys.hostQueue(hostId), { connection: this.#bullRedis, prefix: this.keys.prefix });
      // Connection errors while Redis restarts are expected; the client reconnects by itself.
      queue.on("error", () => undefined);
      this.#queues.set(hostId, queue);
    }
    return queue;
  }

  /**
   * Waits until Redis answers, or throws REDIS_UNAVAILABLE after `timeoutMs`. Commands otherwise
   * wait for Redis forever (so a restart loses nothing); a command line tool wants a clear error.
   */
  async ready(timeoutMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#redis.ping().catch((error: unknown) => {
          // A refused password fails every command at once: say so rather than a raw reply.
          if (isRedisAuthError(error))
            throw new VirtfleetError("REDIS_UNAVAILABLE", `${explainRedisError(error)} (${this.#url})`);
          throw error;
        }),
        new Promise((_, reject) => {
          timer = setTimeout(() => {
            const why = this.#lastError === undefined ? "" : `: ${explainRedisError(this.#lastError)}`;
            reject(
              new VirtfleetError(
                "REDIS_UNAVAILABLE",
                `Redis did not answer within ${timeoutMs / 1000} s (${this.#url})${why}`,
              ),
            );
          }, timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Job counts of a host's queue, by BullMQ state. */
  async queueCounts(hostId: string): Promise<Record<string, number>> {
    return this.#queue(hostId).getJobCounts("waiting", "active", "delayed", "failed", "completed", "prioritized");
  }

  /** A new blocking connection (for following events). */
  connect(): Redis {
    return quietErrors(this.#redis.duplicate());
  }

  /**
   * Every event of every job in the fleet from now on, as they arrive, until `signal` aborts (then
   * the iterator ends). Uses its own blocking connection.
   */
  async *events(options: { signal?: AbortSignal } = {}): AsyncGenerator<StreamedEvent, void, undefined> {
    const redis = this.connect();
    const { signal } = options;
    const stop = () => redis.disconnect();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      // "$" is resolved once, to the last entry now, so nothing written while we read is missed.
      let last = (await redis.xrevrange(this.keys.allEvents(), "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
      while (signal?.aborted !== true) {
        const read = await this.log.readAll(last, 1000, redis);
        last = read.lastEntry;
        yield* read.events;
      }
    } catch (error) {
      // Aborting closes the connection under a pending read: that ends the iterator, quietly.
      if (signal?.aborted !== true) throw error;
    } finally {
      signal?.removeEventListener("abort", stop);
      redis.disconnect();
    }
  }

  /**
   * Every event of a batch's jobs (all of them, from the first), as they arrive; ends once every job
   * of the batch has ended. NOT_FOUND when there is no such batch.
   */
  async *batchEvents(batchId: string): AsyncGenerator<StreamedEvent, void, undefined> {
    if ((await this.getBatch(batchId)) === undefined) {
      throw new VirtfleetError("NOT_FOUND", `no batch ${batchId}`, { field: "batchId" });
    }
    const redis = this.connect();
    try {
      let last = "0";
      for (;;) {
        const events = await this.log.readBatch(batchId, last, 1000, redis);
        for (const e of events) {
          last = e.id;
          yield e;
        }
        if (events.length === 0 && (await this.batchEnded(batchId))) return;
      }
    } finally {
      redis.disconnect();
    }
  }

  job(jobId: string): JobHandle {
    return new JobHandle(
      jobId,
      this.log,
      () => this.connect(),
      (id) => this.cancelJob(id),
    );
  }

  /**
   * What placement knows of every registered host, from a hosts list read at or after `since` (see
   * Placer). Not to be changed: it may be shared.
   */
  candidates(group?: string, since?: number): Promise<readonly HostCandidate[]> {
    return this.placer.candidates(group, since);
  }

  /** Places a VM and claims its room, atomically (see Placer.placeAndClaim). */
  placeAndClaim(
    spec: VmSpec,
    placement: PlacementOptions,
    waitMs = 0,
    exclude: readonly string[] = [],
  ): Promise<string> {
    return this.placer.placeAndClaim(spec, placement, waitMs, exclude);
  }

  /**
   * Asks for one VM. Validates the spec and placement (a bad one throws ValidationError and nothing
   * is enqueued), then admits it in one atomic step (see Admission): claims the name fleet-wide,
   * checks the tenant's quota, places it on the best host with room, and records the job with its
   * `queued` and `placed` events; then enqueues the create job on that host's queue. Asking again
   * for the same VM returns the first job.
   */
  async createVm(specInput: unknown, options: CreateOptions = {}): Promise<JobHandle> {
    const [result] = await this.#createMany([specInput], options);
    if (result instanceof VirtfleetError) throw result;
    return this.job(jobIdOf(result as Admitted));
  }

  /** The placement and guest-ready options of a create, parsed (a bad one throws ValidationError). */
  #parseOptions(options: CreateOptions): ParsedOptions {
    const placement = parseOrThrow(
      PlacementOptions,
      {
        ...(options.host === undefined ? {} : { host: options.host }),
        ...(options.labels === undefined ? {} : { requiredLabels: options.labels }),
        ...(options.group === undefined ? {} : { group: options.group }),
        ...(options.policy === undefined ? {} : { policy: options.policy }),
      },
      "placement",
    );
    const guestReady =
      options.guestReady === undefined || options.guestReady === false
        ? undefined
        : parseOrThrow(GuestReadyOptions, options.guestReady === true ? {} : options.guestReady, "guestReady");
    parseOrThrow(WaitForCapacityMs, options.waitForCapacityMs, "waitForCapacityMs");
    return { placement, guestReady };
  }

  /** Validates and admits a create (see createVm): the job to enqueue, or the earlier job of the same VM. */
  async #admit(
    specInput: unknown,
    options: CreateOptions,
    { placement, guestReady }: ParsedOptions,
  ): Promise<Admitted> {
    const spec = parseOrThrow(VmSpec, specInput, "spec");
    const jobId = `create-${randomUUID()}`;
    const requestedAt = new Date().toISOString();
    // Every part was parsed above: no second pass over the spec.
    const data = (hostId: string): CreateJobData => ({
      kind: "create",
      jobId,
      hostId,
      spec,
      ...(guestReady === undefined ? {} : { guestReady }),
      placement,
      requestedAt,
    });
    const record: VmRecord = {
      name: spec.name,
      hostId: "",
      state: "creating",
      fingerprint: specFingerprint(spec),
      jobId,
      memoryMiB: spec.memoryMiB,
      vcpus: spec.vcpus,
      labels: spec.labels,
      ...(placement.group === undefined ? {} : { group: placement.group }),
      ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
      updatedAt: requestedAt,
    };
    const admitted = await this.placer.withRoom(
      spec,
      placement,
      options.waitForCapacityMs ?? 0,
      [],
      async (candidates, policy): Promise<Exclude<AdmitOutcome, { outcome: "noroom" }> | undefined> => {
        const outcome = await this.#admission.admit({
          record,
          ...("hosts" in candidates
            ? { hosts: candidates.hosts }
            : { classes: candidates.classes, exclude: candidates.exclude ?? [] }),
          policy,
          diskGiB: totalDiskGiB(spec),
          group: placement.group,
          tenant: options.tenant === undefined ? undefined : { name: options.tenant, limits: options.quota ?? {} },
          job: {
            jobId,
            kind: "create",
            vm: spec.name,
            ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
            ...(options.batchId === undefined ? {} : { batchId: options.batchId }),
            ...(options.callbackUrl === undefined ? {} : { callbackUrl: options.callbackUrl }),
          },
        });
        return outcome.outcome === "noroom" ? undefined : outcome;
      },
    );
    switch (admitted.outcome) {
      case "same":
        // The earlier job may not be in its queue yet (its producer failed or is still at it): it
        // is enqueued again (BullMQ keeps one job per id), so the answer is never a job that won't run.
        // (Only while it has not started: a job that ran is never enqueued again.)
        if (admitted.pending && ["queued", "placed"].includes((await this.log.getJob(admitted.jobId))?.phase ?? "")) {
          return { jobId: admitted.jobId, requeue: { ...data(admitted.hostId), jobId: admitted.jobId } };
        }
        return { jobId: admitted.jobId };
      case "clash":
        // A tenant learns only that the name is taken: not by whom, where or with what job.
        throw new VirtfleetError(
          "NAME_CLASH",
          options.tenant === undefined
            ? `a VM named "${spec.name}" already exists with another spec${admitted.hostId ? ` (on ${admitted.hostId})` : ""}`
            : `the VM name "${spec.name}" is taken`,
          { field: "spec.name" },
        );
      case "quota":
        throw new VirtfleetError(
          "QUOTA_EXCEEDED",
          `tenant ${options.tenant} would exceed its ${admitted.which} quota`,
          { field: `quota.${admitted.which}` },
        );
      case "claimed":
        return { data: data(admitted.hostId) };
    }
  }

  /**
   * Asks for many VMs as one batch: each is admitted and placed on its own (one refused does not
   * stop the others); the batch has one event stream and ends when every VM's job has.
   */
  async createBatch(
    specs: readonly unknown[],
    options: CreateOptions = {},
    itemOptions: readonly (BatchItemOptions | undefined)[] = [],
  ): Promise<{ batchId: string; items: BatchItemResult[] }> {
    const batchId = `batch-${randomUUID()}`;
    await this.#batches.create(batchId, specs.length, options.tenant, options.maxBatches);
    const results = await this.#createMany(specs, { ...options, batchId }, itemOptions);
    // Refused items, and VMs asked for before outside this batch (their jobs are not the batch's to
    // follow), count as ended at once.
    let ended = 0;
    const items = results.map((result, i): BatchItemResult => {
      const vm = (specs[i] as { name?: string } | undefined)?.name ?? "";
      if (result instanceof VirtfleetError) {
        ended++;
        return { vm, error: result.toInfo() };
      }
      if (!("data" in result)) ended++;
      return { vm, jobId: jobIdOf(result) };
    });
    await this.#batches.finish(batchId, items, ended);
    return { batchId, items };
  }

  /**
   * Whether every job of a batch has ended (or the batch is gone): then every terminal event is in
   * its stream. Reads only the counts.
   */
  batchEnded(batchId: string): Promise<boolean> {
    return this.#batches.ended(batchId);
  }

  /** A batch: its tenant, how many of its jobs ended, and each item. */
  getBatch(batchId: string): ReturnType<BatchStore["get"]> {
    return this.#batches.get(batchId);
  }

  /**
   * Asks for many VMs; each is validated, admitted and placed on its own (see createVm), and the
   * admitted ones are enqueued in one bulk call per host. Returns a handle or the error of each.
   */
  async createVms(specs: readonly unknown[], options: CreateOptions = {}): Promise<(JobHandle | VirtfleetError)[]> {
    return (await this.#createMany(specs, options)).map((a) => {
      if (a instanceof VirtfleetError) return a;
      return this.job(jobIdOf(a));
    });
  }

  /**
   * createVms' work: each item's enqueued job (or earlier job of the same VM), or its error. The
   * admitted jobs are enqueued in one bulk call per host, then leave the pending set; a host whose
   * enqueue fails has its jobs ended at once (INTERNAL) and their room, quota and names given back.
   */
  async #createMany(
    specs: readonly unknown[],
    options: CreateOptions,
    itemOptions: readonly (BatchItemOptions | undefined)[] = [],
  ): Promise<(Admitted | VirtfleetError)[]> {
    let parsed: ParsedOptions;
    try {
      parsed = this.#parseOptions(options);
    } catch (error) {
      if (error instanceof VirtfleetError) return specs.map(() => error);
      throw error;
    }
    const admitted: (Admitted | VirtfleetError)[] = await Promise.all(
      specs.map(async (spec, i) => {
        try {
          const own = itemOptions[i]?.guestReady;
          const item =
            own === undefined
              ? parsed
              : { placement: parsed.placement, guestReady: this.#parseOptions({ guestReady: own }).guestReady };
          return await this.#admit(spec, options, item);
        } catch (error) {
          if (error instanceof VirtfleetError) return error;
          throw error;
        }
      }),
    );
    const byHost = new Map<string, { data: CreateJobData; again: boolean }[]>();
    for (const a of admitted) {
      if (a instanceof VirtfleetError) continue;
      const job = "data" in a ? { data: a.data, again: false } : a.requeue && { data: a.requeue, again: true };
      if (job === undefined) continue;
      const list = byHost.get(job.data.hostId) ?? [];
      list.push(job);
      byHost.set(job.data.hostId, list);
    }
    const failed = new Map<string, VirtfleetError>();
    await Promise.all(
      [...byHost].map(async ([hostId, jobs]) => {
        try {
          await this.#queue(hostId).addBulk(
            jobs.map(({ data }) => ({ name: "create", data, opts: this.#jobOptions(data.jobId) })),
          );
        } catch {
          // (Redis's own words stay out of the answer: it goes to tenants.)
          const lost = new VirtfleetError("INTERNAL", "the create job could not be enqueued; retry the request");
          for (const { data } of jobs) {
            await this.#failPending(data.jobId, lost.message);
            failed.set(data.jobId, lost);
          }
          return;
        }
        await Promise.all(
          jobs.map(async ({ data }) => {
            if (await this.#pending.take(data.jobId)) return;
            // Someone else took it out: a sweep that ended the job (then it must not run), or
            // another request that enqueued it too.
            if (isTerminal((await this.log.getJob(data.jobId))?.phase ?? "failed")) {
              await this.#queue(hostId)
                .remove(data.jobId)
                .catch(() => undefined);
            }
          }),
        );
      }),
    );
    return admitted.map((a) => (a instanceof VirtfleetError ? a : (failed.get(jobIdOf(a)) ?? a)));
  }

  /**
   * Ends a create job that was admitted but is not in its host's queue: `failed` (INTERNAL), its VM
   * forgotten (room, quota and name given back). Only the caller that takes it out of the pending
   * set does this. True when it did.
   */
  async #failPending(jobId: string, message: string): Promise<boolean> {
    if (!(await this.#pending.take(jobId))) return false;
    const record = await this.log.getJob(jobId);
    if (record === undefined || isTerminal(record.phase)) return false;
    await this.log.append({
      jobId,
      kind: "create",
      vm: record.vm,
      phase: "failed",
      message,
      ...(record.hostId === undefined ? {} : { host: record.hostId }),
      error: { code: "INTERNAL", message },
    });
    await this.vms.forget(record.vm, jobId);
    return true;
  }

  /**
   * Repairs admissions whose producer died (or failed) before it enqueued the job: a create job
   * admitted more than `timeoutMs` ago that its host's queue does not hold ends `failed` (INTERNAL)
   * and gives its room, quota and name back; one that its queue holds (or that already ran) just
   * leaves the pending set. Run by the fleet monitor next to checkHosts. Returns the jobs it ended.
   */
  async sweepPending(timeoutMs = PENDING_JOB_TIMEOUT_MS): Promise<string[]> {
    const ended: string[] = [];
    for (const jobId of await this.#pending.olderThan(Date.now() - timeoutMs)) {
      const record = await this.log.getJob(jobId);
      const queued = record?.hostId !== undefined && (await this.#queue(record.hostId).getJob(jobId)) !== undefined;
      if (record === undefined || queued || !["queued", "placed"].includes(record.phase)) {
        await this.#pending.enqueued([jobId]);
        continue;
      }
      if (await this.#failPending(jobId, "the create job was admitted but never reached its host's queue")) {
        ended.push(jobId);
      }
    }
    return ended;
  }

  /** Destroys a VM wherever it lives. Destroying a VM that is gone succeeds. */
  async destroyVm(nameInput: unknown, options: DestroyOptions = {}): Promise<JobHandle> {
    const name = parseOrThrow(VmName, nameInput, "name");
    const record = await this.vms.get(name);
    if (options.tenant !== undefined && record?.tenant !== options.tenant) {
      throw new VirtfleetError("VM_NOT_FOUND", `no VM "${name}"`, { field: "name" });
    }
    let hostId = record?.hostId;
    if (hostId === undefined || hostId === "") {
      if (options.host !== undefined) hostId = parseOrThrow(HostId, options.host, "host");
      else {
        const up = (await this.hosts.list()).filter((h) => h.up);
        if (up.length !== 1) {
          throw new VirtfleetError("VM_NOT_FOUND", `the fleet knows no VM "${name}"; name its host with --host`, {
            field: "name",
          });
        }
        hostId = (up[0] as HostView).status.hostId;
      }
    }
    const jobId = `destroy-${randomUUID()}`;
    if (record !== undefined) await this.vms.setState(name, "destroying");
    const data: JobData = DestroyJobData.parse({
      kind: "destroy",
      jobId,
      hostId,
      name,
      requestedAt: new Date().toISOString(),
    });
    await this.#enqueue(data, name, {
      ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
      ...(options.callbackUrl === undefined ? {} : { callbackUrl: options.callbackUrl }),
    });
    return this.job(jobId);
  }

  async #enqueue(
    data: JobData,
    vm: string,
    extra: { tenant?: string; batchId?: string; callbackUrl?: string } = {},
  ): Promise<void> {
    // Sent together (one round trip with auto-pipelining); Redis runs them in this order.
    await Promise.all([
      this.log.createJob({
        jobId: data.jobId,
        kind: data.kind,
        vm,
        hostId: data.hostId,
        ...(extra.tenant === undefined ? {} : { tenant: extra.tenant }),
        ...(extra.batchId === undefined ? {} : { batchId: extra.batchId }),
        ...(extra.callbackUrl === undefined ? {} : { callbackUrl: extra.callbackUrl }),
      }),
      this.log.append({
        jobId: data.jobId,
        kind: data.kind,
        vm,
        phase: "queued",
        message: "accepted",
        batchId: extra.batchId ?? "",
      }),
      this.log.append({
        jobId: data.jobId,
        kind: data.kind,
        vm,
        batchId: extra.batchId ?? "",
        phase: "placed",
        host: data.hostId,
        message: `placed on host ${data.hostId}`,
      }),
    ]);
    await this.#queue(data.hostId).add(data.kind, data, this.#jobOptions(data.jobId));
  }

  #jobOptions(jobId: string) {
    return {
      jobId,
      attempts: JOB_ATTEMPTS,
      backoff: { type: "exponential", delay: JOB_BACKOFF_MS, jitter: 0.5 },
      // The job's record and events (our keys) outlive it; BullMQ's copy of a done job is not needed.
      removeOnComplete: true,
      removeOnFail: { age: 7 * 24 * 3600 },
    };
  }

  /**
   * Cancels a job. A job still waiting (or waiting to retry) is taken out of its queue and ends
   * `cancelled` at once; a running one is aborted on the worker that holds it, which kills its
   * subprocess, rolls back what it made and reports `cancelled`. A job that already ended is left as
   * it is. Returns what happened.
   */
  async cancelJob(jobIdInput: unknown): Promise<"cancelled" | "cancelling" | TerminalPhase> {
    const jobId = parseOrThrow(JobId, jobIdInput, "jobId");
    const record = await this.log.getJob(jobId);
    if (record === undefined) throw new VirtfleetError("JOB_NOT_FOUND", `no job "${jobId}"`, { field: "jobId" });
    if (isTerminal(record.phase)) return record.phase;
    await this.log.requestCancel(jobId);
    const hostId = record.hostId;
    if (hostId !== undefined) {
      const job = await this.#queue(hostId).getJob(jobId);
      const state = job === undefined ? "unknown" : await job.getState();
      if (job !== undefined && ["waiting", "delayed", "prioritized", "paused", "waiting-children"].includes(state)) {
        const removed = await job.remove().then(
          () => true,
          () => false, // it became active meanwhile: the worker will see the request
        );
        if (removed) {
          await this.log.append({
            jobId,
            kind: record.kind,
            vm: record.vm,
            phase: "cancelled",
            message: "cancelled before it ran",
            host: hostId,
            error: { code: "CANCELLED", message: "cancelled by request" },
          });
          if (record.kind === "create") {
            await this.vms.forget(record.vm, jobId);
          } else {
            const vm = await this.vms.get(record.vm);
            if (vm?.state === "destroying") await this.vms.setState(record.vm, "running");
          }
          return "cancelled";
        }
      }
      await this.#redis.publish(this.keys.cancelChannel(hostId), jobId);
    }
    return "cancelling";
  }

  /**
   * Deals with hosts whose heartbeat has expired, once per outage: create jobs still waiting in a
   * dead host's queue are re-placed on other hosts (pinned ones fail with HOST_LOST); jobs it was
   * running end `failed` with HOST_LOST and their room is released. Destroy jobs wait for the host to
   * come back (the VM is there). Run by one process at a time (workers elect one). Returns the hosts
   * it dealt with.
   */
  async checkHosts(): Promise<string[]> {
    const handled: string[] = [];
    for (const view of await this.hosts.list()) {
      const hostId = view.status.hostId;
      if (view.up) continue;
      const first = await this.#redis.set(this.keys.hostDown(hostId), new Date().toISOString(), "NX");
      if (first === null) continue;
      await this.#hostLost(hostId);
      handled.push(hostId);
    }
    return handled;
  }

  async #hostLost(hostId: string): Promise<void> {
    const queue = this.#queue(hostId);
    for (const job of await queue.getJobs(["active", "waiting", "delayed", "prioritized"])) {
      if (job?.id === undefined) continue;
      const parsed = JobData.safeParse(job.data);
      const record = await this.log.getJob(job.id);
      if (!parsed.success || record === undefined || isTerminal(record.phase)) continue;
      const data = parsed.data;
      const vm = data.kind === "create" ? data.spec.name : data.name;
      const jobId = job.id;
      const lost = { code: "HOST_LOST" as const, message: `host ${hostId} stopped answering` };
      /** Ends the job `failed`; a create's VM is forgotten (its room and quota given back). */
      const fail = async (message: string, error: ErrorInfo) => {
        await this.log.append({ jobId, kind: data.kind, vm, phase: "failed", host: hostId, message, error });
        if (data.kind === "create") await this.vms.forget(vm, jobId);
      };
      const state = await job.getState();
      if (data.kind === "destroy") {
        if (state === "active") await fail(lost.message, lost);
        continue;
      }
      if (state !== "active") {
        const removed = await job.remove().then(
          () => true,
          () => false,
        );
        if (!removed) continue;
      }
      if (state === "active" || data.placement?.host !== undefined) {
        await fail(lost.message, lost);
        continue;
      }
      // Waiting and not pinned: place it again, on another host.
      await this.vms.ledger.release(hostId, vm);
      try {
        const placement = data.placement ?? PlacementOptions.parse({});
        const next = await this.placeAndClaim(data.spec, placement, 0, [hostId]);
        await this.vms.placed(vm, next, placement.group);
        const moved: JobData = { ...data, hostId: next };
        await this.log.append({
          jobId: job.id,
          kind: "create",
          vm,
          phase: "placed",
          host: next,
          message: `re-placed on host ${next}: host ${hostId} was lost`,
        });
        await this.#queue(next).add("create", moved, this.#jobOptions(job.id));
      } catch (error) {
        const info = toErrorInfo(error);
        await fail(`host ${hostId} was lost and ${info.message}`, info);
      }
    }
  }

  /** Closes every connection; safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const queue of this.#queues.values()) {
        await queue.close().catch(() => undefined);
      }
      if (this.#bullRedis !== undefined) await closeRedis(this.#bullRedis);
      await closeRedis(this.#redis);
    })();
    return this.#closing;
  }
}
