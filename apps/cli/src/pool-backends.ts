import {
  type ClaimRequest,
  type ClaimResult,
  POOL_LABEL,
  type PoolCreateRequest,
  type PoolDetail,
  type PoolRemoved,
  type PoolUpdateRequest,
  type PoolView,
  VirtfleetError,
} from "@virtfleet/core";
import { closeRedis, type FleetClient } from "@virtfleet/fleet";
import { createLabsDeps, PoolService } from "@virtfleet/labs";
import type { VirtfleetApi } from "@virtfleet/sdk";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { translated } from "./api-backend.js";
import type { PoolBackend } from "./commands/pools.js";

/** Pools straight through Redis (the operator's view: every tenant's pools). */
export class RedisPoolBackend implements PoolBackend {
  readonly #service: PoolService;
  readonly #redis: Redis;
  readonly #labs: { close(): Promise<void> };

  constructor(fleet: FleetClient) {
    this.#redis = fleet.connect();
    const labs = createLabsDeps({ redis: this.#redis, fleet, logger: pino({ level: "silent" }) });
    this.#labs = labs;
    this.#service = new PoolService(labs.deps);
  }

  create(request: PoolCreateRequest): Promise<PoolView> {
    return this.#service.create(request);
  }
  update(name: string, request: PoolUpdateRequest): Promise<PoolView> {
    return this.#service.update(name, request);
  }
  list(): Promise<PoolView[]> {
    return this.#service.list();
  }
  async show(name: string): Promise<PoolDetail> {
    return { ...(await this.#service.get(name)), vms: await this.#service.vms(name) };
  }
  async remove(name: string, wait: boolean): Promise<PoolRemoved> {
    return { name, ...(await this.#service.remove(name, {}, { wait })) };
  }
  claim(name: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.#service.claim(name, request);
  }
  release(vm: string): Promise<{ vm: string; pool: string }> {
    return this.#service.release(vm);
  }

  async close(): Promise<void> {
    await this.#labs.close();
    await closeRedis(this.#redis);
  }
}

/** Pools through the HTTP API (the token's tenant's pools). */
export class ApiPoolBackend implements PoolBackend {
  readonly #api: VirtfleetApi;

  constructor(api: VirtfleetApi) {
    this.#api = api;
  }

  create(request: PoolCreateRequest): Promise<PoolView> {
    return translated(this.#api.createPool(request));
  }
  update(name: string, request: PoolUpdateRequest): Promise<PoolView> {
    return translated(this.#api.updatePool(name, request));
  }
  list(): Promise<PoolView[]> {
    return translated(this.#api.listPools());
  }
  show(name: string): Promise<PoolDetail> {
    return translated(this.#api.getPool(name));
  }
  remove(name: string, wait: boolean): Promise<PoolRemoved> {
    return translated(this.#api.removePool(name, { wait }));
  }
  claim(name: string, request: ClaimRequest): Promise<ClaimResult> {
    return translated(this.#api.claim(name, request));
  }
  /** The VM's pool from its label, else the pool that lists it as claimed. */
  async release(vm: string): Promise<{ vm: string; pool: string }> {
    const record = await translated(this.#api.getVm(vm)).catch((error: unknown) => {
      if (error instanceof VirtfleetError && error.code === "VM_NOT_FOUND") return undefined;
      throw error;
    });
    let pool = record?.labels[POOL_LABEL];
    if (pool === undefined)
      for (const p of await this.list()) {
        if (p.claimed === 0) continue;
        if ((await this.show(p.name)).vms.some((v) => v.name === vm && v.state === "claimed")) pool = p.name;
        if (pool !== undefined) break;
      }
    if (pool === undefined) throw new VirtfleetError("NOT_FOUND", `"${vm}" is not a claimed pool VM`, { field: "vm" });
    return translated(this.#api.releaseClaim(pool, vm));
  }
}
