import type { JobsOptions } from "bullmq";

/** The default job options: retry transient failures with exponential backoff. */
export const JOB_ATTEMPTS = 5;
/** The first retry's delay; each next one doubles it (with up to 50 % jitter). */
export const JOB_BACKOFF_MS = 2000;
/** How long BullMQ keeps its copy of a failed job (the job's record and events are ours). */
export const FAILED_JOB_KEEP_SEC = 7 * 24 * 3600;

/** The BullMQ options of a create or destroy job, whoever enqueues it (producer or host monitor). */
export function jobOptions(jobId: string): JobsOptions {
  return {
    jobId,
    attempts: JOB_ATTEMPTS,
    backoff: { type: "exponential", delay: JOB_BACKOFF_MS, jitter: 0.5 },
    // The job's record and events (our keys) outlive it; BullMQ's copy of a done job is not needed.
    removeOnComplete: true,
    removeOnFail: { age: FAILED_JOB_KEEP_SEC },
  };
}

/**
 * How long a job waits before its next attempt after `attemptsMade` failed ones: BullMQ's
 * exponential backoff with jitter as jobOptions asks of it, for the attempts a worker makes itself
 * (a bundle's jobs, see bundles/bundle.ts).
 */
export function retryDelayMs(attemptsMade: number, random = Math.random): number {
  const full = JOB_BACKOFF_MS * 2 ** Math.max(0, attemptsMade - 1);
  return Math.round(full * (1 - 0.5 * random()));
}
