import { type CreateJobData, isTerminal, VirtfleetError } from "@virtfleet/core";
import { BUNDLE_JOB_NAME, BUNDLE_MIN_JOBS, bundleJobId, splitIntoBundles } from "../bundles/bundle.js";
import { failPending } from "../records/fail-pending.js";
import type { ProducerContext } from "./context.js";
import type { BatchItemOptions, CreateOptions, ParsedOptions } from "./create-options.js";
import { jobOptions } from "./job-options.js";

/** An admitted create: the job to enqueue, or the earlier job of the same VM (to enqueue again when pending). */
export type Admitted = { data: CreateJobData } | { jobId: string; requeue?: CreateJobData };

export function jobIdOf(a: Admitted): string {
  return "data" in a ? a.data.jobId : a.jobId;
}

/** One host's jobs of a call: each fresh create, or an earlier job enqueued again (`again`). */
type HostJobs = { data: CreateJobData; again: boolean }[];

/** How createMany parses a create's options and admits one spec (FleetClient's placement). */
export interface CreateSteps {
  parseOptions(options: CreateOptions): ParsedOptions;
  admit(spec: unknown, options: CreateOptions, item: ParsedOptions): Promise<Admitted>;
}

/**
 * createVms' work: each item's enqueued job (or earlier job of the same VM), or its error. Each
 * spec is validated, admitted and placed on its own; the admitted jobs are enqueued in one bulk call
 * per host (all hosts' calls sent in one write), then leave the pending set (one command for all); a
 * host whose enqueue fails has its jobs ended at once (INTERNAL) and their room, quota and names given back.
 */
export async function createMany(
  ctx: ProducerContext,
  steps: CreateSteps,
  specs: readonly unknown[],
  options: CreateOptions,
  itemOptions: readonly (BatchItemOptions | undefined)[] = [],
): Promise<(Admitted | VirtfleetError)[]> {
  let parsed: ParsedOptions;
  try {
    parsed = steps.parseOptions(options);
  } catch (error) {
    if (error instanceof VirtfleetError) return specs.map(() => error);
    throw error;
  }
  const admitted: (Admitted | VirtfleetError)[] = await Promise.all(
    specs.map(async (spec, i) => {
      try {
        const own = itemOptions[i]?.guestReady;
        const item =
          own === undefined
            ? parsed
            : { placement: parsed.placement, guestReady: steps.parseOptions({ guestReady: own }).guestReady };
        return await steps.admit(spec, options, item);
      } catch (error) {
        if (error instanceof VirtfleetError) return error;
        throw error;
      }
    }),
  );
  const byHost = new Map<string, HostJobs>();
  for (const a of admitted) {
    if (a instanceof VirtfleetError) continue;
    const job = "data" in a ? { data: a.data, again: false } : a.requeue && { data: a.requeue, again: true };
    if (job === undefined) continue;
    const list = byHost.get(job.data.hostId) ?? [];
    list.push(job);
    byHost.set(job.data.hostId, list);
  }
  const failed = new Map<string, VirtfleetError>();
  /** A host's jobs could not be enqueued: each ends at once (INTERNAL), its room, quota and name given back. */
  const lose = async (jobs: HostJobs) => {
    // (Redis's own words stay out of the answer: it goes to tenants.)
    const lost = new VirtfleetError("INTERNAL", "the create job could not be enqueued; retry the request");
    for (const { data } of jobs) {
      await failPending(ctx, data.jobId, lost.message);
      failed.set(data.jobId, lost);
    }
    return undefined;
  };
  // A call of many creates sends each host's fresh creates as a bundle (even one), which later calls'
  // creates may join while it waits (bundles/open-bundles.ts); a call of one create adds its own job.
  const many = specs.length > 1;
  const add = async (hostId: string, jobs: HostJobs) => {
    try {
      const entries = queueEntries(jobs, many ? 1 : BUNDLE_MIN_JOBS);
      const queue = ctx.queue(hostId);
      // One entry is added on its own: addBulk builds a pipeline even for one (ioredis copies
      // BullMQ's scripts into each), and most hosts of a big fleet get one job per call.
      if (entries.length === 1) {
        const [only] = entries as [(typeof entries)[number]];
        await queue.add(only.name, only.data, only.opts);
      } else {
        await queue.addBulk(entries);
      }
      const last = entries.findLast((e) => e.name === BUNDLE_JOB_NAME);
      if (last !== undefined) ctx.bundles.added(hostId, last.opts.jobId as string);
      return { hostId, jobs };
    } catch {
      return lose(jobs);
    }
  };
  /** The host's fresh creates join its open bundle (the rest are added): false when they could not. */
  const join = async (hostId: string, jobs: HostJobs) => {
    const fresh = jobs.filter((j) => !j.again);
    const again = jobs.filter((j) => j.again);
    let joined: boolean;
    try {
      const data = fresh.map((j) => j.data);
      joined = await ctx.bundles.join(ctx.redis, ctx.keys, hostId, ctx.queue(hostId), data);
    } catch {
      return lose(jobs);
    }
    if (!joined) return false;
    if (again.length > 0 && (await add(hostId, again)) === undefined) return { hostId, jobs: fresh };
    return { hostId, jobs };
  };
  // Every host's entries are sent at once, in one write (most hosts of a big fleet get one job per
  // call: 500 lone adds would otherwise cost 500 writes here and 500 reads in Redis); the hosts whose
  // open bundle could not be joined are added in a second write.
  const hosts = [...byHost];
  const first = await ctx.sendTogether(() =>
    Promise.all(
      hosts.map(([hostId, jobs]) =>
        many && ctx.bundles.last(hostId) !== undefined && jobs.some((j) => !j.again)
          ? join(hostId, jobs)
          : add(hostId, jobs),
      ),
    ),
  );
  const second = await ctx.sendTogether(() =>
    Promise.all(hosts.flatMap(([hostId, jobs], i) => (first[i] === false ? [add(hostId, jobs)] : []))),
  );
  const enqueued = [...first.filter((e) => e !== false), ...second];
  // The enqueued jobs leave the pending set in one command. When all were still there, this producer
  // took them all (the common case); otherwise some were taken out by someone else: a sweep that
  // ended the job (then it must not run), or another request that enqueued it too.
  const inQueues = enqueued.flatMap((e) =>
    e === undefined ? [] : e.jobs.map(({ data }) => ({ hostId: e.hostId, data })),
  );
  if ((await ctx.pending.enqueued(inQueues.map(({ data }) => data.jobId))) !== inQueues.length) {
    await Promise.all(
      inQueues.map(async ({ hostId, data }) => {
        // (A bundle's job that ended is skipped by the worker: a bundle cannot lose one job.)
        if (isTerminal((await ctx.log.getJob(data.jobId))?.phase ?? "failed")) {
          await ctx
            .queue(hostId)
            .remove(data.jobId)
            .catch(() => undefined);
        }
      }),
    );
  }
  return admitted.map((a) => (a instanceof VirtfleetError ? a : (failed.get(jobIdOf(a)) ?? a)));
}

/**
 * One host's BullMQ entries for a call's jobs: fresh creates, when there are at least `minBundle`
 * (BUNDLE_MIN_JOBS, or 1 in a call of many creates), go in bundles (one BullMQ job each, see
 * bundles/bundle.ts); an earlier job enqueued again, and a lone create of a call of one, go as their
 * own job (under their own id, so BullMQ adds each once).
 */
function queueEntries(jobs: Readonly<HostJobs>, minBundle: number) {
  const fresh = jobs.filter((j) => !j.again).map((j) => j.data);
  const single = (data: CreateJobData) => ({ name: "create", data, opts: jobOptions(data.jobId) });
  if (fresh.length < minBundle) return jobs.map(({ data }) => single(data));
  return [
    ...jobs.filter((j) => j.again).map(({ data }) => single(data)),
    ...splitIntoBundles(fresh).map((bundle) => {
      const id = bundleJobId(bundle.length);
      return { name: BUNDLE_JOB_NAME, data: { jobs: bundle }, opts: jobOptions(id) };
    }),
  ];
}
