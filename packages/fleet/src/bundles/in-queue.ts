import type { Queue } from "bullmq";
import { BUNDLE_JOB_NAME, queuedJobs } from "./bundle.js";

/** The states of a host's BullMQ jobs still to run, or running, that a bundle can be in. */
const TO_RUN = ["active", "waiting", "delayed", "prioritized", "waiting-children"] as const;

/**
 * Which of `jobIds` a host's queue holds: as a BullMQ job of their own id, or carried by a bundle
 * still to run or running (a bundle's BullMQ id is its own, so `queue.getJob(jobId)` does not find
 * the jobs it carries). The bundles are read only when some id is not a job of its own, and once for
 * all of those ids; each is parsed (a payload that does not parse carries nothing). A repair path's
 * read (the fleet monitor's sweep of pending admissions): it reads every job of the queue.
 */
export async function jobsInQueue(queue: Queue, jobIds: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  const rest = new Set<string>();
  const own = await Promise.all(jobIds.map((jobId) => queue.getJob(jobId)));
  for (const [i, jobId] of jobIds.entries()) (own[i] === undefined ? rest : found).add(jobId);
  if (rest.size === 0) return found;
  for (const job of await queue.getJobs([...TO_RUN])) {
    if (job?.name !== BUNDLE_JOB_NAME) continue;
    for (const data of queuedJobs(job).jobs) if (rest.has(data.jobId)) found.add(data.jobId);
  }
  return found;
}
