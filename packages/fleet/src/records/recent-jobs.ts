import type { StreamedEvent } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { type StreamEntries, unpackAllEvents } from "./event-log.js";

/** All-events stream entries read per step when looking back for jobs. */
const PAGE = 500;

/** A job's newest event that matched, with the job's tenant (from its record; undefined when it has none or expired). */
export interface RecentJob {
  event: StreamedEvent;
  tenant: string | undefined;
}

export interface RecentJobsOptions {
  limit: number;
  /** Picks the jobs the caller may see by tenant. */
  visible: (tenant: string | undefined) => boolean;
  /** Picks the events looked for; a job is found by its newest matching event. */
  match: (event: StreamedEvent) => boolean;
}

/**
 * The most recent jobs with an event that `match`es, newest first, each once (by its newest
 * matching event), read backwards from the all-events stream: only jobs still in that stream (its
 * last ALL_EVENTS_MAXLEN entries) are found.
 */
export async function recentJobs(redis: Redis, keys: Keys, options: RecentJobsOptions): Promise<RecentJob[]> {
  const out: RecentJob[] = [];
  const seen = new Set<string>();
  let end = "+";
  while (out.length < options.limit) {
    const entries = (await redis.xrevrange(keys.allEvents(), end, "-", "COUNT", PAGE)) as StreamEntries;
    if (entries.length === 0) break;
    const found: StreamedEvent[] = [];
    for (const e of unpackAllEvents(entries).flatMap((x) => x.events.reverse())) {
      if (seen.has(e.jobId) || !options.match(e)) continue;
      seen.add(e.jobId);
      found.push(e);
    }
    const tenants =
      found.length === 0 ? [] : await Promise.all(found.map((e) => redis.hget(keys.job(e.jobId), "tenant")));
    found.forEach((event, i) => {
      const tenant = tenants[i] ?? undefined;
      if (out.length < options.limit && options.visible(tenant)) out.push({ event, tenant });
    });
    if (entries.length < PAGE) break;
    end = `(${(entries.at(-1) as [string, string[]])[0]}`;
  }
  return out;
}

/**
 * Every job of the VM named `vm` still in the all-events stream (create, destroy…), newest first,
 * each by its newest event (its current phase, or how it ended).
 */
export function vmJobHistory(
  redis: Redis,
  keys: Keys,
  vm: string,
  options: Omit<RecentJobsOptions, "match">,
): Promise<RecentJob[]> {
  return recentJobs(redis, keys, { ...options, match: (e) => e.vm === vm });
}
