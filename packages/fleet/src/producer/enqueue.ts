import type { JobData } from "@virtfleet/core";
import type { ProducerContext } from "./context.js";
import { jobOptions } from "./job-options.js";

/** Records a job (its record, `queued` and `placed` events) and adds it to its host's queue. */
export async function enqueue(
  ctx: ProducerContext,
  data: JobData,
  vm: string,
  extra: { tenant?: string; batchId?: string; callbackUrl?: string } = {},
): Promise<void> {
  // Sent together (one round trip with auto-pipelining); Redis runs them in this order.
  await Promise.all([
    ctx.log.createJob({
      jobId: data.jobId,
      kind: data.kind,
      vm,
      hostId: data.hostId,
      ...(extra.tenant === undefined ? {} : { tenant: extra.tenant }),
      ...(extra.batchId === undefined ? {} : { batchId: extra.batchId }),
      ...(extra.callbackUrl === undefined ? {} : { callbackUrl: extra.callbackUrl }),
    }),
    ctx.log.append({
      jobId: data.jobId,
      kind: data.kind,
      vm,
      phase: "queued",
      message: "accepted",
      batchId: extra.batchId ?? "",
    }),
    ctx.log.append({
      jobId: data.jobId,
      kind: data.kind,
      vm,
      batchId: extra.batchId ?? "",
      phase: "placed",
      host: data.hostId,
      message: `placed on host ${data.hostId}`,
    }),
  ]);
  await ctx.queue(data.hostId).add(data.kind, data, jobOptions(data.jobId));
}
