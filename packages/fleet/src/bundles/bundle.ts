/**
 * Bundles: the create jobs one call admits for one host, carried to that host by ONE BullMQ job.
 *
 * BullMQ's own work per job (add, take, finish: ~150 µs of Redis and as much of Node) is most of what
 * a create costs the control plane when hundreds are asked for at once. A bundle pays it once for
 * up to BUNDLE_MAX_JOBS creates. Nothing else changes: each create keeps its own job id, record,
 * events, retries (made by the worker, with the same backoff) and cancel; the worker runs a bundle's
 * jobs side by side within its concurrency, and a bundle run again (its worker died, or handed it
 * back at shutdown) skips the jobs that already ended.
 */
import { randomUUID } from "node:crypto";
import { JobData, toValidationError, type VirtfleetError } from "@virtfleet/core";
import { z } from "zod";

/** The BullMQ job name of a bundle (a single job is named after its kind: create, destroy). */
export const BUNDLE_JOB_NAME = "bundle";
/** The fewest fresh creates for one host that one call sends as a bundle (fewer go one BullMQ job each). */
export const BUNDLE_MIN_JOBS = 2;
/** The most creates one bundle carries; more for one host are split into several bundles. */
export const BUNDLE_MAX_JOBS = 250;

/** A bundle's payload as read back from Redis: its jobs are each parsed again (see queuedJobs). */
export const BundleData = z.object({ jobs: z.array(z.unknown()).min(1) }).strict();

/** A bundle's BullMQ job id, the count of jobs it was added with in group 1 (see bundleJobId). */
const BUNDLE_ID = /^bundle-(\d+)-/;

/**
 * A new bundle's BullMQ job id: `bundle-<jobs it carries>-<uuid>` (never a job id of ours: those start
 * with the job's kind). The count in the id lets a queue's jobs be counted from ids alone (until
 * other creates join the bundle: see open-bundles.ts).
 */
export function bundleJobId(jobs: number): string {
  return `bundle-${jobs}-${randomUUID()}`;
}

/**
 * How many of our jobs a BullMQ job of a host's queue carries, from its id (a bundle's count when it
 * was added, else 1). Creates may join a waiting bundle later: jobsInQueueEntries reads its count.
 */
export function jobsInQueueEntry(id: string): number {
  const m = BUNDLE_ID.exec(id);
  return m === null ? 1 : Number(m[1]);
}

/** Whether a BullMQ job id is a bundle's. */
export function isBundleId(id: string): boolean {
  return BUNDLE_ID.test(id);
}

/** Splits `jobs` into bundles of at most BUNDLE_MAX_JOBS, as even as can be. */
export function splitIntoBundles<T>(jobs: readonly T[], max = BUNDLE_MAX_JOBS): T[][] {
  const count = Math.ceil(jobs.length / max);
  const size = Math.ceil(jobs.length / Math.max(1, count));
  const out: T[][] = [];
  for (let i = 0; i < jobs.length; i += size) out.push(jobs.slice(i, i + size));
  return out;
}

/** A BullMQ job of a host's queue as the fleet reads it: a single job, or a bundle. */
export interface QueuedJob {
  name: string;
  data: unknown;
}

/**
 * The jobs a host's BullMQ job carries, each parsed with JobData: its one job, or a bundle's jobs in
 * order. What does not parse is in `bad` (with an error naming the field, e.g. `jobs.3.spec.name`).
 */
export function queuedJobs(job: QueuedJob): { jobs: JobData[]; bad: VirtfleetError[] } {
  if (job.name !== BUNDLE_JOB_NAME) {
    const one = JobData.safeParse(job.data);
    return one.success ? { jobs: [one.data], bad: [] } : { jobs: [], bad: [toValidationError(one.error, "job")] };
  }
  const bundle = BundleData.safeParse(job.data);
  if (!bundle.success) return { jobs: [], bad: [toValidationError(bundle.error, "bundle")] };
  const jobs: JobData[] = [];
  const bad: VirtfleetError[] = [];
  for (const [i, item] of bundle.data.jobs.entries()) {
    const parsed = JobData.safeParse(item);
    if (parsed.success) jobs.push(parsed.data);
    else bad.push(toValidationError(parsed.error, `bundle.jobs.${i}`));
  }
  return { jobs, bad };
}

/** The VM a job is about. */
export function vmOfJob(data: JobData): string {
  return data.kind === "create" ? data.spec.name : data.name;
}
