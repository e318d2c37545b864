import { constants } from "node:fs";
import { access, mkdir, statfs } from "node:fs/promises";
import os from "node:os";
import {
  type ErrorInfo,
  type HostStatus,
  isTerminal,
  JobData,
  type Phase,
  toErrorInfo,
  toValidationError,
  VirtfleetError,
  type VirtType,
} from "@virtfleet/core";
import { type CommandRunner, ExecaRunner, HostPaths } from "@virtfleet/hypervisor";
import { closeRedis, createRedis, EventLog, HostRegistry, Keys, VmRegistry } from "@virtfleet/queue";
import { type Job, UnrecoverableError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { Libvirt } from "./libvirt.js";
import { NameLocks } from "./name-locks.js";
import { Provisioner, type ProvisionerTimeouts } from "./provisioner.js";

export interface HostAgentOptions {
  redisUrl: string;
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
  logger: Logger;
  /** Heartbeat period; the status lives three periods. Default 5000 ms. */
  heartbeatMs?: number;
  runner?: CommandRunner;
  timeouts?: Partial<ProvisionerTimeouts>;
  version?: string;
}

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
 * Provisioner, reports every phase, and keeps the host's heartbeat.
 */
export class HostAgent {
  readonly hostId: string;
  readonly keys: Keys;
  readonly #o: HostAgentOptions;
  readonly #logger: Logger;
  readonly #redis: Redis;
  readonly #log: EventLog;
  readonly #hosts: HostRegistry;
  readonly #vms: VmRegistry;
  readonly #libvirt: Libvirt;
  readonly #paths: HostPaths;
  readonly #locks = new NameLocks();
  #provisioner: Provisioner | undefined;
  #worker: Worker | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #status: HostStatus | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: HostAgentOptions) {
    this.#o = options;
    this.hostId = options.hostId;
    this.keys = new Keys(options.prefix);
    this.#logger = options.logger.child({ host: options.hostId });
    this.#redis = createRedis({ url: options.redisUrl, connectionName: `virtfleet-worker:${options.hostId}` });
    this.#log = new EventLog(this.#redis, this.keys);
    this.#hosts = new HostRegistry(this.#redis, this.keys);
    this.#vms = new VmRegistry(this.#redis, this.keys);
    const runner = options.runner ?? new ExecaRunner({ logger: this.#logger });
    this.#libvirt = new Libvirt(runner, options.libvirtUri ?? "qemu:///system");
    this.#paths = new HostPaths(options.storageDir, options.imageDir);
  }

  async start(): Promise<void> {
    const o = this.#o;
    await mkdir(this.#paths.storageDir, { recursive: true, mode: 0o755 });
    const virtType = await detectVirtType(o.virtType ?? "auto");
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
    const runner = o.runner ?? new ExecaRunner({ logger: this.#logger });
    this.#provisioner = new Provisioner({
      libvirt: this.#libvirt,
      runner,
      paths: this.#paths,
      hostId: this.hostId,
      defaultVirtType: virtType,
      ...(o.timeouts === undefined ? {} : { timeouts: o.timeouts }),
    });
    this.#status = {
      hostId: this.hostId,
      version: o.version ?? "0.1.0",
      startedAt: new Date().toISOString(),
      heartbeatAt: new Date().toISOString(),
      libvirtUri: this.#libvirt.uri,
      virtTypes: virtType === "kvm" ? ["kvm", "qemu"] : ["qemu"],
      defaultVirtType: virtType,
      concurrency: o.concurrency ?? 4,
      memoryMiB: { total: node.memoryMiB, capacity: node.memoryMiB },
      vcpus: { total: node.cpus, capacity: node.cpus },
      diskFreeGiB: 0,
      runningVms: 0,
      images: [],
      labels: o.labels ?? {},
      draining: false,
    };
    await this.#beat();
    const period = o.heartbeatMs ?? 5000;
    this.#heartbeat = setInterval(() => {
      this.#beat().catch((error: unknown) => this.#logger.warn({ err: error }, "heartbeat failed"));
    }, period);
    this.#heartbeat.unref();

    this.#worker = new Worker(this.keys.hostQueue(this.hostId), (job, _token, signal) => this.#process(job, signal), {
      connection: this.#redis.duplicate(),
      prefix: this.keys.prefix,
      concurrency: o.concurrency ?? 4,
      autorun: false,
    });
    this.#worker.on("error", (error) => this.#logger.error({ err: error }, "worker error"));
    void this.#worker.run().catch((error: unknown) => this.#logger.error({ err: error }, "worker stopped"));
    await this.#worker.waitUntilReady();
    this.#logger.info(
      { virtType, concurrency: o.concurrency ?? 4, storageDir: this.#paths.storageDir, imageDir: this.#paths.imageDir },
      "worker started",
    );
  }

  async #beat(): Promise<void> {
    const status = this.#status;
    if (status === undefined) return;
    const [fs, images, running] = await Promise.all([
      statfs(this.#paths.storageDir).catch(() => undefined),
      this.#paths.listImages(),
      this.#paths.listVmDirs(),
    ]);
    status.heartbeatAt = new Date().toISOString();
    status.diskFreeGiB = fs === undefined ? 0 : Math.floor((fs.bavail * fs.bsize) / 2 ** 30);
    status.images = images;
    status.runningVms = running.length;
    await this.#hosts.heartbeat(status, (this.#o.heartbeatMs ?? 5000) * 3);
  }

  async #process(job: Job, signal?: AbortSignal): Promise<void> {
    const parsed = JobData.safeParse(job.data);
    if (!parsed.success) {
      const error = toValidationError(parsed.error, "job");
      this.#logger.error({ jobId: job.id, err: error }, "bad job payload");
      throw new UnrecoverableError(`INVALID_SPEC: ${error.message}`);
    }
    const data = parsed.data;
    const vm = data.kind === "create" ? data.spec.name : data.name;
    const log = this.#logger.child({ jobId: data.jobId, vm, kind: data.kind });
    const report = async (phase: Phase, message: string, error?: ErrorInfo) => {
      log.info({ phase, ...(error === undefined ? {} : { code: error.code }) }, message);
      await this.#log.append({
        jobId: data.jobId,
        kind: data.kind,
        vm,
        phase,
        message,
        host: this.hostId,
        ...(error === undefined ? {} : { error }),
      });
    };
    const current = await this.#log.getJob(data.jobId);
    if (current !== undefined && isTerminal(current.phase)) {
      log.info({ phase: current.phase }, "job already ended; skipping");
      return;
    }
    const provisioner = this.#provisioner;
    if (provisioner === undefined) throw new Error("agent not started");
    const release = await this.#locks.acquire(vm);
    try {
      if (data.kind === "create") {
        await provisioner.create(data, report, signal);
        await this.#vms.setState(vm, "running", data.jobId);
        await report("done", `VM ${vm} is running on ${this.hostId}`);
      } else {
        await provisioner.destroy(data, report, signal);
        await this.#vms.remove(vm);
        await report("done", `VM ${vm} destroyed`);
      }
    } catch (error) {
      const info = toErrorInfo(error);
      if (signal?.aborted || info.code === "CANCELLED") {
        await report("cancelled", `cancelled: ${info.message}`, { ...info, code: "CANCELLED" });
        if (data.kind === "create") await this.#forgetVm(vm, data.jobId);
        throw new UnrecoverableError(`CANCELLED: ${info.message}`);
      }
      const retryable = error instanceof VirtfleetError ? error.retryable : true;
      const attempts = job.opts.attempts ?? 1;
      if (!retryable || job.attemptsMade + 1 >= attempts) {
        await report("failed", `${info.code}: ${info.message}`, info);
        if (data.kind === "create") await this.#forgetVm(vm, data.jobId);
        throw new UnrecoverableError(`${info.code}: ${info.message}`);
      }
      log.warn({ code: info.code, attempt: job.attemptsMade + 1, attempts, err: error }, "attempt failed; will retry");
      await report(
        "queued",
        `attempt ${job.attemptsMade + 1} of ${attempts} failed (${info.code}: ${info.message}); retrying`,
      );
      throw error;
    } finally {
      release();
    }
  }

  async #forgetVm(name: string, jobId: string): Promise<void> {
    const record = await this.#vms.get(name);
    if (record?.jobId === jobId) await this.#vms.remove(name);
  }

  /** Stops taking jobs, lets running ones finish, closes connections. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
      const steps: [string, () => Promise<unknown>][] = [
        ["worker", async () => this.#worker?.close()],
        ["host status", () => this.#hosts.markDown(this.hostId)],
        ["redis", () => closeRedis(this.#redis)],
      ];
      for (const [what, step] of steps) {
        try {
          await step();
        } catch (error) {
          this.#logger.warn({ err: error }, `closing ${what} failed`);
        }
      }
      this.#logger.info("worker stopped");
    })();
    return this.#closing;
  }
}
