import { type ErrorInfo, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { LuaCommand } from "../redis/lua.js";

/** How long a batch (its record, items and events) is kept. */
export const BATCH_TTL_SEC = 7 * 24 * 3600;
/** How long a batch whose every item was refused is kept: nothing of it runs. */
export const REFUSED_BATCH_TTL_SEC = 3600;
/** Batches one tenant may keep stored at once (the oldest ended ones make room). */
export const DEFAULT_MAX_BATCHES_PER_TENANT = 100;
/** A refused item's stored error message is cut to this many characters. */
export const MAX_STORED_ERROR_CHARS = 200;

export interface BatchItemResult {
  vm: string;
  jobId?: string;
  error?: ErrorInfo;
}

export interface StoredBatch {
  batchId: string;
  tenant: string | undefined;
  createdAt: string;
  total: number;
  ended: number;
  items: BatchItemResult[];
}

const reserve = new LuaCommand(new URL("./commands/reserve-batch.lua", import.meta.url));
/** Calls of the reserve script for one batch, at most (each after the tenant's set changed under it). */
const RESERVE_TRIES = 5;

/** What is stored of a refused item: its code and field, and a short message. */
function storedError(e: ErrorInfo): ErrorInfo {
  const message =
    e.message.length > MAX_STORED_ERROR_CHARS ? `${e.message.slice(0, MAX_STORED_ERROR_CHARS - 1)}…` : e.message;
  return { code: e.code, message, ...(e.field === undefined ? {} : { field: e.field }) };
}

/**
 * Batches as Redis holds them: a record (tenant, total, ended), one short JSON line per item (a
 * refused item keeps its code, field and a message of at most MAX_STORED_ERROR_CHARS), and the
 * events of its jobs. A tenant keeps at most `maxBatches` of them; a batch lives BATCH_TTL_SEC,
 * or REFUSED_BATCH_TTL_SEC when none of its items was admitted.
 */
export class BatchStore {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /**
   * Records a new batch. For a tenant at its limit of batches whose every batch is still running,
   * QUOTA_EXCEEDED (field `quota.batches`) and nothing is written.
   */
  async create(batchId: string, total: number, tenant: string | undefined, maxBatches?: number): Promise<void> {
    const key = this.#keys.batch(batchId);
    const fields = {
      batchId,
      total: String(total),
      ended: "0",
      createdAt: new Date().toISOString(),
      ...(tenant === undefined ? {} : { tenant }),
    };
    if (tenant === undefined) {
      await this.#redis.multi().hset(key, fields).expire(key, BATCH_TTL_SEC).exec();
      return;
    }
    const max = maxBatches ?? DEFAULT_MAX_BATCHES_PER_TENANT;
    const k = this.#keys;
    // The script asks for the keys of the tenant's batches when it must delete some (see its header).
    let ids: string[] = [];
    let ok: unknown;
    for (let tries = 0; tries < RESERVE_TRIES; tries++) {
      ok = await reserve.run(
        this.#redis,
        [k.tenantBatches(tenant), key, ...ids.flatMap((id) => [k.batch(id), k.batchItems(id), k.batchEvents(id)])],
        [
          Date.now(),
          BATCH_TTL_SEC * 1000,
          max,
          batchId,
          BATCH_TTL_SEC,
          ids.length,
          ...ids,
          ...Object.entries(fields).flat(),
        ],
      );
      if (!Array.isArray(ok)) break;
      ids = (ok as string[]).slice(1);
    }
    if (Array.isArray(ok)) throw new Error(`tenant ${tenant}'s batches kept changing while recording batch ${batchId}`);
    if (ok !== 1) {
      throw new VirtfleetError(
        "QUOTA_EXCEEDED",
        `tenant ${tenant} already has ${max} batches that have not ended; wait for one to end`,
        { field: "quota.batches" },
      );
    }
  }

  /**
   * Stores the items' outcome: `ended` of them count as ended at once (refused, or not the batch's
   * to follow). A batch with no admitted item is kept only REFUSED_BATCH_TTL_SEC.
   */
  async finish(batchId: string, items: readonly BatchItemResult[], ended: number): Promise<void> {
    const key = this.#keys.batch(batchId);
    const itemsKey = this.#keys.batchItems(batchId);
    const lines = items.map((i) =>
      JSON.stringify(
        i.error === undefined
          ? i
          : { vm: i.vm, ...(i.jobId === undefined ? {} : { jobId: i.jobId }), error: storedError(i.error) },
      ),
    );
    const ttl = items.some((i) => i.jobId !== undefined) ? BATCH_TTL_SEC : REFUSED_BATCH_TTL_SEC;
    const m = this.#redis.multi();
    if (ended > 0) m.hincrby(key, "ended", ended);
    if (lines.length > 0) m.rpush(itemsKey, ...lines).expire(itemsKey, ttl);
    await m.expire(key, ttl).exec();
  }

  async get(batchId: string): Promise<StoredBatch | undefined> {
    const [h, raw] = await Promise.all([
      this.#redis.hgetall(this.#keys.batch(batchId)),
      this.#redis.lrange(this.#keys.batchItems(batchId), 0, -1),
    ]);
    if (h.batchId === undefined) return undefined;
    return {
      batchId,
      tenant: h.tenant,
      createdAt: h.createdAt ?? "",
      total: Number(h.total ?? 0),
      ended: Number(h.ended ?? 0),
      items: raw.map((r) => JSON.parse(r) as BatchItemResult),
    };
  }

  /** Whether every job of a batch has ended (or the batch is gone). Reads only the counts. */
  async ended(batchId: string): Promise<boolean> {
    const [total, ended] = await this.#redis.hmget(this.#keys.batch(batchId), "total", "ended");
    return total === null || Number(ended ?? 0) >= Number(total);
  }
}
