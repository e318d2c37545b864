import { randomUUID } from "node:crypto";
import { VirtfleetError } from "@virtfleet/core";
import type { BatchItemResult, BatchStore } from "../records/batches.js";
import { type Admitted, jobIdOf } from "./create-many.js";
import type { CreateOptions } from "./create-options.js";

/**
 * Asks for many VMs as one batch: each is admitted and placed on its own (one refused does not
 * stop the others, `createMany` with the batch's id in its options); the batch has one event stream
 * and ends when every VM's job has.
 */
export async function createBatch(
  batches: BatchStore,
  createMany: (options: CreateOptions) => Promise<(Admitted | VirtfleetError)[]>,
  specs: readonly unknown[],
  options: CreateOptions,
): Promise<{ batchId: string; items: BatchItemResult[] }> {
  const batchId = `batch-${randomUUID()}`;
  await batches.create(batchId, specs.length, options.tenant, options.maxBatches);
  const results = await createMany({ ...options, batchId });
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
  await batches.finish(batchId, items, ended);
  return { batchId, items };
}
