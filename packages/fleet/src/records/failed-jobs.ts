import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { type RecentJob, type RecentJobsOptions, recentJobs } from "./recent-jobs.js";

/** A job's `failed` event, with the job's tenant (from its record; undefined when it has none or expired). */
export type FailedJob = RecentJob;

/**
 * The most recent failed jobs, newest first: their `failed` events (which carry the error: code,
 * message, and for a failed command its argv, exit code and stderr), read backwards from the
 * all-events stream (recentJobs), so only failures still in that stream are found. `visible` picks
 * the jobs the caller may see by tenant.
 */
export function recentFailures(
  redis: Redis,
  keys: Keys,
  options: Omit<RecentJobsOptions, "match">,
): Promise<FailedJob[]> {
  return recentJobs(redis, keys, { ...options, match: (e) => e.phase === "failed" && e.error !== undefined });
}
