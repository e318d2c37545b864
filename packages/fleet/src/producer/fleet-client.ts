import { randomUUID } from "node:crypto";
import {
  type CreateJobData,
  isoNow,
  type PlacementOptions,
  parseOrThrow,
  type StreamedEvent,
  specFingerprint,
  type TerminalPhase,
  totalDiskGiB,
  VirtfleetError,
  VmSpec,
} from "@virtfleet/core";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { Admission, type AdmitOutcome } from "../admission/admission.js";
import { jobsInQueueEntries, OpenBundles } from "../bundles/open-bundles.js";
import { HostRegistry } from "../hosts/host-registry.js";
import { ImageCatalogue } from "../images/image-catalogue.js";
import type { HostCandidate } from "../placement/eligibility.js";
import { DEFAULT_PLACEMENT_CACHE_MS, Placer } from "../placement/placer.js";
import { type BatchItemResult, BatchStore } from "../records/batches.js";
import { EventLog } from "../records/event-log.js";
import { JobEventHub } from "../records/job-event-hub.js";
import { JobHandle } from "../records/job-handle.js";
import { PendingJobs } from "../records/pending-jobs.js";
import { type VmRecord, VmRegistry } from "../records/vm-registry.js";
import { closeRedis, createRedis, quietErrors } from "../redis/connection.js";
import { Keys } from "../redis/keys.js";
import { describeRedis, type RedisConfig, resolveRedisConfig } from "../redis/redis-config.js";
import { explainRedisError, isRedisAuthError } from "../redis/redis-errors.js";
import { ReplicationBarrier } from "../redis/replication.js";
import { sendTogether } from "../redis/together.js";
import { cancelJob } from "./cancel.js";
import type { ProducerContext } from "./context.js";
import { createBatch } from "./create-batch.js";
import { type Admitted, type CreateSteps, createMany, jobIdOf } from "./create-many.js";
import { type BatchItemOptions, type CreateOptions, type ParsedOptions, parseCreateOptions } from "./create-options.js";
import { type DestroyOptions, destroyVm } from "./destroy.js";
import { batchEvents, fleetEvents } from "./fleet-events.js";

export interface FleetClientOptions {
  /** How to reach Redis (credentials, TLS): e.g. `redisConfigFromEnv()`. Either this or `redisUrl`. */
  redis?: RedisConfig;
  /** Redis URL: short for `redis: { url }`. */
  redisUrl?: string;
  /** Key prefix shared by every part of one fleet. Default `virtfleet`. */
  prefix?: string;
  /** How long placement may reuse the hosts list. Default DEFAULT_PLACEMENT_CACHE_MS; 0 reads it for every request. */
  placementCacheMs?: number;
}

export type { BatchItemResult } from "../records/batches.js";
export type { BatchItemOptions, CreateOptions } from "./create-options.js";
export type { DestroyOptions } from "./destroy.js";

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
  /** Reads the events of every job this client follows, on one blocking connection (made when first needed). */
  #events: JobEventHub | undefined;
  /** Where VMs go: the hosts list, eligibility, and the claim (see placement/placer.ts). */
  readonly placer: Placer;
  /** `WAIT`s for REDIS_MIN_REPLICAS replicas before an acknowledged write is answered (redis/replication.ts). */
  readonly #replication: ReplicationBarrier;

  /** What the producer's operations (create-many, destroy, cancel, fleet-events) share. */
  readonly #ctx: ProducerContext;
  /** How createMany parses options and admits one spec (placement, here). */
  readonly #steps: CreateSteps = {
    parseOptions: parseCreateOptions,
    admit: (spec, options, item) => this.#admit(spec, options, item),
  };

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
    this.#replication = new ReplicationBarrier(this.#redis, this.keys.replicationFence(), config.replication);
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
    this.#ctx = {
      redis: this.#redis,
      keys: this.keys,
      hosts: this.hosts,
      vms: this.vms,
      log: this.log,
      pending: this.#pending,
      bundles: new OpenBundles(),
      queue: (hostId) => this.#queue(hostId),
      sendTogether: (issue) => (this.#bullRedis === undefined ? issue() : sendTogether(this.#bullRedis, issue)),
      connect: () => this.connect(),
      job: (jobId) => this.job(jobId),
    };
  }

  /** A host's BullMQ queue, kept open until close() (the host monitor re-places a lost host's jobs through it). */
  hostQueue(hostId: string): Queue {
    return this.#queue(hostId);
  }

  #queue(hostId: string): Queue {
    let queue = this.#queues.get(hostId);
    if (queue === undefined) {
      this.#bullRedis ??= quietErrors(
        this.#redis.duplicate({ connectionName: "virtfleet-client-queue", enableAutoPipelining: false }),
      );
      // Without the version check each host's queue would ask Redis for its whole INFO once (a
      // thousand hosts: a thousand INFOs); the host's own worker checks the version when it starts.
      queue = new Queue(this.keys.hostQueue(hostId), {
        connection: this.#bullRedis,
        prefix: this.keys.prefix,
        skipVersionCheck: true,
      });
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
    const queue = this.#queue(hostId);
    const states = ["waiting", "active", "delayed", "failed", "completed", "prioritized"] as const;
    const counts = await queue.getJobCounts(...states);
    // BullMQ counts its own jobs; a bundle is one of them but carries several of ours (its id says how many).
    await Promise.all(
      states.map(async (state) => {
        if ((counts[state] ?? 0) === 0) return;
        const ids = await queue.getRanges([state], 0, -1);
        counts[state] = (await jobsInQueueEntries(this.#redis, queue, ids)).reduce((n, x) => n + x, 0);
      }),
    );
    return counts;
  }

  /** A new blocking connection (for following events). */
  connect(): Redis {
    return quietErrors(this.#redis.duplicate());
  }

  /**
   * Every event of every job in the fleet from now on, as they arrive, until `signal` aborts (then
   * the iterator ends). Uses its own blocking connection.
   */
  events(options: { signal?: AbortSignal } = {}): AsyncGenerator<StreamedEvent, void, undefined> {
    return fleetEvents(this.#ctx, options);
  }

  /**
   * Every event of a batch's jobs (all of them, from the first), as they arrive; ends once every job
   * of the batch has ended. NOT_FOUND when there is no such batch.
   */
  batchEvents(batchId: string): AsyncGenerator<StreamedEvent, void, undefined> {
    return batchEvents(this.#ctx, this.#batches, batchId);
  }

  job(jobId: string): JobHandle {
    this.#events ??= new JobEventHub(() => this.connect(), this.#redis, this.keys);
    return new JobHandle(
      jobId,
      this.log,
      () => this.connect(),
      (id) => this.cancelJob(id),
      this.#events,
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
    await this.replicated();
    return this.job(jobIdOf(result as Admitted));
  }

  /**
   * Resolves once every write made before the call is on REDIS_MIN_REPLICAS replicas (no-op when it
   * is 0); throws REPLICATION_TIMEOUT (retryable) otherwise. createVm, createVms, createBatch,
   * destroyVm and cancelJob call it before they return; the API calls it before each answer to a
   * mutating request. See redis/replication.ts.
   */
  replicated(): Promise<void> {
    return this.#replication.wait();
  }

  /** Validates and admits a create (see createVm): the job to enqueue, or the earlier job of the same VM. */
  async #admit(
    specInput: unknown,
    options: CreateOptions,
    { placement, guestReady }: ParsedOptions,
  ): Promise<Admitted> {
    const spec = parseOrThrow(VmSpec, specInput, "spec");
    const jobId = `create-${randomUUID()}`;
    const requestedAt = isoNow();
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
      createdAt: requestedAt,
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
    const batch = await createBatch(
      this.#batches,
      (batchOptions) => this.#createMany(specs, batchOptions, itemOptions),
      specs,
      options,
    );
    await this.replicated();
    return batch;
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
    const results = await this.#createMany(specs, options);
    await this.replicated();
    return results.map((a) => {
      if (a instanceof VirtfleetError) return a;
      return this.job(jobIdOf(a));
    });
  }

  #createMany(
    specs: readonly unknown[],
    options: CreateOptions,
    itemOptions: readonly (BatchItemOptions | undefined)[] = [],
  ): Promise<(Admitted | VirtfleetError)[]> {
    return createMany(this.#ctx, this.#steps, specs, options, itemOptions);
  }

  /** Destroys a VM wherever it lives. Destroying a VM that is gone succeeds. */
  async destroyVm(nameInput: unknown, options: DestroyOptions = {}): Promise<JobHandle> {
    const job = await destroyVm(this.#ctx, nameInput, options);
    await this.replicated();
    return job;
  }

  /**
   * Cancels a job. A job still waiting (or waiting to retry) is taken out of its queue and ends
   * `cancelled` at once; a running one is aborted on the worker that holds it, which kills its
   * subprocess, rolls back what it made and reports `cancelled`. A job that already ended is left as
   * it is. Returns what happened.
   */
  async cancelJob(jobIdInput: unknown): Promise<"cancelled" | "cancelling" | TerminalPhase> {
    const outcome = await cancelJob(this.#ctx, jobIdInput);
    await this.replicated();
    return outcome;
  }

  /** Closes every connection; safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#events?.close();
      for (const queue of this.#queues.values()) {
        await queue.close().catch(() => undefined);
      }
      if (this.#bullRedis !== undefined) await closeRedis(this.#bullRedis);
      await this.#replication.close();
      await closeRedis(this.#redis);
    })();
    return this.#closing;
  }
}
