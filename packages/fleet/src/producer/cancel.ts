import { isTerminal, JobId, parseOrThrow, type TerminalPhase, VirtfleetError } from "@virtfleet/core";
import type { ProducerContext } from "./context.js";

/** BullMQ states of a job that has not started: it can be taken out of its queue. */
const NOT_STARTED = ["waiting", "delayed", "prioritized", "paused", "waiting-children"];

/**
 * Cancels a job. A job still waiting (or waiting to retry) is taken out of its queue and ends
 * `cancelled` at once; a running one is aborted on the worker that holds it, which kills its
 * subprocess, rolls back what it made and reports `cancelled`. A job that already ended is left as
 * it is, and so is one that ends by itself while it is being cancelled. Returns what happened.
 */
export async function cancelJob(
  ctx: ProducerContext,
  jobIdInput: unknown,
): Promise<"cancelled" | "cancelling" | TerminalPhase> {
  const jobId = parseOrThrow(JobId, jobIdInput, "jobId");
  const record = await ctx.log.getJob(jobId);
  if (record === undefined) throw new VirtfleetError("JOB_NOT_FOUND", `no job "${jobId}"`, { field: "jobId" });
  if (isTerminal(record.phase)) return record.phase;
  await ctx.log.requestCancel(jobId);
  const hostId = record.hostId;
  if (hostId !== undefined) {
    const job = await ctx.queue(hostId).getJob(jobId);
    const state = job === undefined ? "unknown" : await job.getState();
    /** Ends the job `cancelled` at once; false when it had ended meanwhile. */
    const endNow = async (): Promise<boolean> => {
      const id = await ctx.log.append({
        jobId,
        kind: record.kind,
        vm: record.vm,
        phase: "cancelled",
        message: "cancelled before it ran",
        host: hostId,
        error: { code: "CANCELLED", message: "cancelled by request" },
      });
      if (id === undefined) return false;
      if (record.kind === "create") {
        await ctx.vms.forget(record.vm, jobId);
      } else {
        const vm = await ctx.vms.get(record.vm);
        if (vm?.state === "destroying") await ctx.vms.setState(record.vm, "running");
      }
      return true;
    };
    if (job !== undefined && NOT_STARTED.includes(state)) {
      const removed = await job.remove().then(
        () => true,
        () => false, // it became active meanwhile: the worker will see the request
      );
      if (removed) {
        await endNow();
        return "cancelled";
      }
    } else if (job === undefined && record.kind === "create" && ["queued", "placed"].includes(record.phase)) {
      // Not a BullMQ job of its own: a create waiting in a bundle (bundles/bundle.ts), or between
      // two attempts of a bundled job. Its worker reads the job under the VM's lock before starting
      // it, and a create whose event is refused (the job ended) stops and rolls back: it can end now.
      if (await endNow()) {
        // Should its worker have started it meanwhile, this stops it sooner.
        await ctx.redis.publish(ctx.keys.cancelChannel(hostId), jobId);
        return "cancelled";
      }
    }
    await ctx.redis.publish(ctx.keys.cancelChannel(hostId), jobId);
  }
  // A job that ended by itself meanwhile answers how it ended.
  const now = (await ctx.log.getJob(jobId))?.phase;
  return now !== undefined && isTerminal(now) ? now : "cancelling";
}
