import type { StreamedEvent } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { type StreamEntries, unpackAllEvents } from "./event-log.js";

/** All-events stream entries read per step when looking back for failures. */
const PAGE = 500;

/** A job's `failed` event, with the job's tenant (from its record; undefined when it has none or expired). */
export interface FailedJob {
  event: StreamedEvent;
  tenant: string | undefined;
}

/**
 * The most recent failed jobs, newest first: their `failed` events (which carry the error: code,
 * message, and for a failed command its argv, exit code and stderr), read backwards from the
 * all-events stream, so only failures still in that stream (its last ALL_EVENTS_MAXLEN entries) are
 * found. `visible` picks the jobs the caller may see by tenant.
 */
export async function recentFailures(
  redis: Redis,
  keys: Keys,
  options: { limit: number; visible: (tenant: string | undefined) => boolean },
): Promise<FailedJob[]> {
  const out: FailedJob[] = [];
  const seen = new Set<string>();
  let end = "+";
  while (out.length < options.limit) {
    const entries = (await redis.xrevrange(keys.allEvents(), end, "-", "COUNT", PAGE)) as StreamEntries;
    if (entries.length === 0) break;
    const failed = unpackAllEvents(entries)
      .flatMap((e) => e.events.reverse())
      .filter((e) => e.phase === "failed" && e.error !== undefined && !seen.has(e.jobId));
    for (const e of failed) seen.add(e.jobId);
    const tenants =
      failed.length === 0 ? [] : await Promise.all(failed.map((e) => redis.hget(keys.job(e.jobId), "tenant")));
    failed.forEach((event, i) => {
      const tenant = tenants[i] ?? undefined;
      if (out.length < options.limit && options.visible(tenant)) out.push({ event, tenant });
    });
    if (entries.length < PAGE) break;
    end = `(${(entries.at(-1) as [string, string[]])[0]}`;
  }
  return out;
}
