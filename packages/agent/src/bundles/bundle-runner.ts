/**
 * Runs a bundle (bundles/bundle.ts in @virtfleet/fleet: the creates one call admitted for this host,
 * carried by one BullMQ job): each of its jobs as if it were its own BullMQ job. They run side by
 * side within the host's concurrency (the permits every job takes); each is retried here with the
 * backoff BullMQ would use; each can be cancelled on its own. When the worker shuts down, the jobs
 * not finished are handed back with the bundle (run again, it skips the jobs that ended).
 */
import { type JobData, toErrorInfo } from "@virtfleet/core";
import { JOB_ATTEMPTS, queuedJobs, retryDelayMs } from "@virtfleet/fleet";
import { type Job, WaitingError } from "bullmq";
import type { LimitFunction } from "p-limit";
import type { Logger } from "pino";

/** What one run of a job came to, and so how its BullMQ job (or its bundle) goes on. */
export type RunOutcome =
  /** It ended (done, or already ended: nothing more to do). */
  | { outcome: "ended" }
  /** It ended failed or cancelled, its terminal event written: `reason` is BullMQ's failed reason. */
  | { outcome: "final"; reason: string }
  /** The worker is shutting down: the job goes back to the queue (its `queued` event written). */
  | { outcome: "handBack" }
  /** This attempt failed and another is due (its `queued` event written). */
  | { outcome: "retry"; error: unknown };

/** One run of a job: attempt `made + 1` of `of`. */
export type RunJob = (data: JobData, attempt: { made: number; of: number }, signal: AbortSignal) => Promise<RunOutcome>;

export interface BundleRunnerOptions {
  run: RunJob;
  /** The host's permits: every job, alone or in a bundle, runs holding one. */
  permits: LimitFunction;
  /** Whether an abort reason is the worker's shutdown (then the job is handed back, not cancelled). */
  isShutdown: (reason: unknown) => boolean;
  logger: Logger;
  /** Attempts per job. Default JOB_ATTEMPTS (what a job of its own gets). */
  attempts?: number;
}

export class BundleRunner {
  readonly #o: BundleRunnerOptions;
  /** The running bundles' jobs, by job id: to cancel one. */
  readonly #controllers = new Map<string, AbortController>();

  constructor(options: BundleRunnerOptions) {
    this.#o = options;
  }

  /** Aborts a bundle's job running here (a cancel request); false when none has that id. */
  cancel(jobId: string, reason: unknown): boolean {
    const controller = this.#controllers.get(jobId);
    controller?.abort(reason);
    return controller !== undefined;
  }

  /**
   * Runs the bundle's jobs to their end. Throws WaitingError once the bundle is handed back (the
   * worker is shutting down); throws when a job could not be run at all within its attempts (Redis
   * unreachable, say): BullMQ then runs the bundle again, and the jobs that ended are skipped.
   */
  async run(job: Job, token: string | undefined, signal: AbortSignal | undefined): Promise<void> {
    const { jobs, bad } = queuedJobs(job);
    for (const error of bad)
      this.#o.logger.error({ bundle: job.id, err: error, field: error.field }, "bad job payload in a bundle; skipped");
    // One listener on the bundle's signal (a shutdown, a cancel of the bundle) aborts every job of it.
    const controllers = jobs.map(() => new AbortController());
    const follow = () => {
      for (const c of controllers) c.abort(signal?.reason);
    };
    if (signal?.aborted) follow();
    else signal?.addEventListener("abort", follow, { once: true });
    let results: PromiseSettledResult<"ended" | "handBack">[];
    try {
      results = await Promise.allSettled(jobs.map((data, i) => this.#runOne(data, controllers[i] as AbortController)));
    } finally {
      signal?.removeEventListener("abort", follow);
    }
    if (results.some((r) => r.status === "fulfilled" && r.value === "handBack")) {
      await job.moveToWait(token);
      throw new WaitingError();
    }
    const failed = results.find((r) => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  async #runOne(data: JobData, controller: AbortController): Promise<"ended" | "handBack"> {
    this.#controllers.set(data.jobId, controller);
    const attempts = this.#o.attempts ?? JOB_ATTEMPTS;
    try {
      for (let made = 0; ; made++) {
        let result: RunOutcome;
        try {
          result = await this.#o.permits(() => this.#o.run(data, { made, of: attempts }, controller.signal));
        } catch (error) {
          // Not the job's own failure (that is an outcome): what ran it failed, e.g. Redis.
          if (made + 1 >= attempts) throw error;
          this.#o.logger.warn(
            { jobId: data.jobId, err: error, attempt: made + 1, attempts },
            `running a bundle's job failed (${toErrorInfo(error).message}); trying again`,
          );
          result = { outcome: "retry", error };
        }
        if (result.outcome === "ended" || result.outcome === "final") return "ended";
        if (result.outcome === "handBack") return "handBack";
        await abortableSleep(retryDelayMs(made + 1), controller.signal);
        if (controller.signal.aborted && this.#o.isShutdown(controller.signal.reason)) return "handBack";
        // A cancel during the wait: the next run sees it and ends the job cancelled.
      }
    } finally {
      if (this.#controllers.get(data.jobId) === controller) this.#controllers.delete(data.jobId);
    }
  }
}

/** Waits `ms`, or until `signal` aborts. */
function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
