import type {
  ImageImportInput,
  ImageRecord,
  ImageViewOut,
  StreamedEvent,
  TemplatePutResult,
  TemplateSpec,
  TemplateView,
} from "@virtfleet/core";
import { closeRedis, FleetClient, type RedisConfig } from "@virtfleet/fleet";
import { LabKeys, TemplateStore } from "@virtfleet/labs";

/** The Redis connection type, as the fleet client hands one out. */
type Redis = ReturnType<FleetClient["connect"]>;

import type { Backend, CreateRequest, HostRow, VmRow } from "./backend.js";
import { redisLabs } from "./commands/lab-backends.js";
import type { LabBackend } from "./commands/labs.js";
import { redisLeases } from "./commands/lease-backends.js";
import type { LeaseBackend } from "./commands/leases.js";
import { RedisPoolBackend } from "./pool-backends.js";

/** The CLI straight on Redis, as a producer of the fleet. */
export class RedisBackend implements Backend {
  readonly kind = "redis";
  readonly fleet: FleetClient;
  readonly #prefix: string;
  #labs: LabBackend | undefined;
  #leases: LeaseBackend | undefined;
  #ready: Promise<void> | undefined;
  #stores: { redis: Redis; keys: LabKeys; templates: TemplateStore } | undefined;
  #pools: RedisPoolBackend | undefined;

  /** `redis`: a whole configuration (credentials, TLS), or a bare URL. */
  constructor(redis: RedisConfig | string, prefix: string) {
    this.fleet = new FleetClient({ redis: typeof redis === "string" ? { url: redis } : redis, prefix });
    this.#prefix = prefix;
  }

  labs(): LabBackend {
    this.#labs ??= redisLabs(this.fleet, this.#prefix, () => this.ready());
    return this.#labs;
  }

  /** Fails fast with REDIS_UNAVAILABLE instead of waiting for Redis forever. */
  ready(): Promise<void> {
    this.#ready ??= this.fleet.ready(5000);
    return this.#ready;
  }

  async createVm(r: CreateRequest): Promise<string> {
    await this.ready();
    const job = await this.fleet.createVm(r.spec, {
      ...(r.host === undefined ? {} : { host: r.host }),
      labels: r.labels,
      ...(r.group === undefined ? {} : { group: r.group }),
      policy: r.policy,
      ...(r.waitForCapacitySec === undefined ? {} : { waitForCapacityMs: r.waitForCapacitySec * 1000 }),
      ...(r.guestReady === undefined ? {} : { guestReady: r.guestReady }),
    });
    return job.id;
  }

  async destroyVm(name: string, host?: string): Promise<string> {
    await this.ready();
    return (await this.fleet.destroyVm(name, host === undefined ? {} : { host })).id;
  }

  async waitJob(jobId: string, onEvent: (e: StreamedEvent) => void): Promise<StreamedEvent> {
    await this.ready();
    return this.fleet.job(jobId).wait({ onEvent });
  }

  async followBatch(batchId: string, onEvent: (e: StreamedEvent) => void): Promise<void> {
    await this.ready();
    for await (const e of this.fleet.batchEvents(batchId)) onEvent(e);
  }

  async cancelJob(jobId: string): Promise<string> {
    await this.ready();
    return this.fleet.cancelJob(jobId);
  }

  async listVms(f: { host?: string; state?: string; label?: Record<string, string> }): Promise<VmRow[]> {
    await this.ready();
    return (await this.fleet.vms.list())
      .filter(
        (v) =>
          (f.host === undefined || v.hostId === f.host) &&
          (f.state === undefined || v.state === f.state) &&
          Object.entries(f.label ?? {}).every(([k, val]) => v.labels[k] === val),
      )
      .map(({ fingerprint: _f, tenant: _t, ...v }) => v);
  }

  async listHosts(): Promise<HostRow[]> {
    await this.ready();
    return (await this.fleet.hosts.list()).map((h) => ({
      ...h.status,
      up: h.up,
      draining: h.draining,
      capacity: h.allocation.capacity,
      allocated: h.allocation.allocated,
    }));
  }

  async listImages(): Promise<ImageViewOut[]> {
    await this.ready();
    return this.fleet.images.list();
  }

  async importImage(input: ImageImportInput, timeoutMs: number): Promise<ImageRecord> {
    await this.ready();
    return input.url !== undefined
      ? this.fleet.images.importUrl(input)
      : this.fleet.images.importFile(input, timeoutMs);
  }

  async removeImage(name: string): Promise<void> {
    await this.ready();
    await this.fleet.images.remove(name);
  }

  /** Lab environments' stores, on a connection of their own (made on first use). */
  labStores(): { redis: Redis; keys: LabKeys; templates: TemplateStore } {
    if (this.#stores === undefined) {
      const redis = this.fleet.connect();
      const keys = new LabKeys(this.fleet.keys.prefix);
      this.#stores = { redis, keys, templates: new TemplateStore(redis, keys) };
    }
    return this.#stores;
  }

  // Straight on Redis the CLI is the operator: its templates have no tenant (every tenant may use them).
  async putTemplate(name: string, spec: TemplateSpec): Promise<TemplatePutResult> {
    await this.ready();
    return this.labStores().templates.put(name, spec);
  }

  async listTemplates(): Promise<TemplateView[]> {
    await this.ready();
    return this.labStores().templates.list();
  }

  async getTemplate(name: string): Promise<TemplateView> {
    await this.ready();
    return this.labStores().templates.require(name, {}, "name");
  }

  async removeTemplate(name: string): Promise<void> {
    await this.ready();
    await this.labStores().templates.remove(name);
  }

  async pools(): Promise<RedisPoolBackend> {
    await this.ready();
    this.#pools ??= new RedisPoolBackend(this.fleet);
    return this.#pools;
  }

  leases(): LeaseBackend {
    this.#leases ??= redisLeases(this.fleet, () => this.ready());
    return this.#leases;
  }

  async close(): Promise<void> {
    await this.#pools?.close();
    await this.#leases?.close();
    await this.#labs?.close();
    await this.fleet.close();
    if (this.#stores !== undefined) await closeRedis(this.#stores.redis);
  }
}
