import { type StreamedEvent, VirtfleetError } from "@virtfleet/core";
import type { BatchStore } from "../records/batches.js";
import type { ProducerContext } from "./context.js";

/**
 * Every event of every job in the fleet from now on, as they arrive, until `signal` aborts (then
 * the iterator ends). Uses its own blocking connection.
 */
export async function* fleetEvents(
  ctx: ProducerContext,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<StreamedEvent, void, undefined> {
  const redis = ctx.connect();
  const { signal } = options;
  const stop = () => redis.disconnect();
  signal?.addEventListener("abort", stop, { once: true });
  try {
    // "$" is resolved once, to the last entry now, so nothing written while we read is missed.
    let last = (await redis.xrevrange(ctx.keys.allEvents(), "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
    while (signal?.aborted !== true) {
      const read = await ctx.log.readAll(last, 1000, redis);
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
export async function* batchEvents(
  ctx: ProducerContext,
  batches: BatchStore,
  batchId: string,
): AsyncGenerator<StreamedEvent, void, undefined> {
  if ((await batches.get(batchId)) === undefined) {
    throw new VirtfleetError("NOT_FOUND", `no batch ${batchId}`, { field: "batchId" });
  }
  const redis = ctx.connect();
  try {
    let last = "0";
    for (;;) {
      const events = await ctx.log.readBatch(batchId, last, 1000, redis);
      for (const e of events) {
        last = e.id;
        yield e;
      }
      if (events.length === 0 && (await batches.ended(batchId))) return;
    }
  } finally {
    redis.disconnect();
  }
}
