import {
  type ErrorInfo,
  type JobKind,
  PHASE_PERCENT,
  type Phase,
  ProgressEvent,
  type StreamedEvent,
  VirtfleetError,
} from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { BatchedScript } from "../redis/scripts.js";
import { JobRecord, parseRecord } from "./records.js";

/** How long a job's record and events are kept after its last event. */
export const JOB_TTL_SEC = 7 * 24 * 3600;
export const JOB_STREAM_MAXLEN = 1000;
/** Entries kept in the all-events stream (each holds one script run's events: one to a few hundred). */
export const ALL_EVENTS_MAXLEN = 10_000;

export type { JobRecord } from "./records.js";

export interface EventInput {
  jobId: string;
  kind: JobKind;
  vm: string;
  phase: Phase;
  message: string;
  host?: string | undefined;
  percent?: number;
  error?: ErrorInfo;
  /** The guest's addresses (on `guest.ready`). */
  addresses?: string[];
  /** Refuse, with a CANCELLED error, when the job was asked to be cancelled (checked atomically). */
  unlessCancelled?: boolean;
  /** In the same step, set this VM's state (and job), if the fleet still records it. */
  vmState?: { key: string; state: string; addresses?: readonly string[] };
}

/** A progress event as stored in the streams. */
export function toEvent(input: EventInput, at = new Date().toISOString()): ProgressEvent {
  const event: ProgressEvent = {
    jobId: input.jobId,
    kind: input.kind,
    vm: input.vm,
    phase: input.phase,
    percent: input.percent ?? PHASE_PERCENT[input.phase],
    message: input.message,
    at,
  };
  if (input.host !== undefined) event.host = input.host;
  if (input.error !== undefined) event.error = input.error;
  if (input.addresses !== undefined) event.addresses = input.addresses;
  return event;
}

// Lua: appends an event to the job's stream, and to its batch's stream (the terminal event counts
// toward the batch's end), and updates the job's record. `e` holds: job (its hash key), json, phase,
// percent, message, at, host, err (json or ''), batch (the job's batch id, or false). The streams'
// keys follow from the job's as Keys names them (`<job>:events` and `<prefix>:events`). A job's
// record and stream live JOB_TTL_SEC after its first (`queued`) and its terminal event.
// The all-events stream gets one entry per script run, not one per event: `flush_events()`, run
// once at the script's end (BatchedScript's epilogue), writes the run's events as the fields of one
// entry (`e`, json, `e`, json, … in order), which costs Redis one XADD for a whole batch of jobs.
// Shared with the admission script.
export const APPEND_LUA = `
local fleet_stream, fleet_events = nil, {}
local function append_event(e)
  local prefix = string.sub(e.job, 1, string.find(e.job, ':job:', 1, true) - 1)
  local stream = e.job .. ':events'
  local id = redis.call('XADD', stream, 'MAXLEN', '~', ${JOB_STREAM_MAXLEN}, '*', 'e', e.json)
  fleet_stream = prefix .. ':events'
  fleet_events[#fleet_events + 1] = 'e'
  fleet_events[#fleet_events + 1] = e.json
  local terminal = e.phase == 'done' or e.phase == 'failed' or e.phase == 'cancelled'
  if e.batch then
    local bkey = prefix .. ':batch:' .. e.batch
    redis.call('XADD', bkey .. ':events', '*', 'e', e.json)
    if terminal then redis.call('HINCRBY', bkey, 'ended', 1) end
    redis.call('EXPIRE', bkey .. ':events', ${JOB_TTL_SEC})
  end
  local f = { 'phase', e.phase, 'percent', e.percent, 'message', e.message, 'updatedAt', e.at }
  if e.host ~= '' then f[#f + 1] = 'hostId'; f[#f + 1] = e.host end
  if e.err ~= '' then f[#f + 1] = 'error'; f[#f + 1] = e.err end
  redis.call('HSET', e.job, unpack(f))
  if terminal or e.phase == 'queued' then
    redis.call('EXPIRE', e.job, ${JOB_TTL_SEC})
    redis.call('EXPIRE', stream, ${JOB_TTL_SEC})
  end
  return id
end
local function flush_events()
  if fleet_stream == nil then return end
  redis.call('XADD', fleet_stream, 'MAXLEN', '~', ${ALL_EVENTS_MAXLEN}, '*', unpack(fleet_events))
  fleet_stream, fleet_events = nil, {}
end
`;

// Appends an event unless the job already ended: a job's terminal event is its last.
// KEYS: job hash[, vm hash]. ARGV: the event as JSON (the record's fields are read from it), '1' to
// refuse (returning '!cancel') when the job was asked to be cancelled. With a vm hash (KEYS[2]):
// also sets the VM's state to ARGV[3] and its job to ARGV[4] (and its addresses, a JSON list, to
// ARGV[5] when given), if the VM is still recorded.
const APPEND = {
  lib: APPEND_LUA,
  epilogue: "flush_events()",
  body: `
local j = redis.call('HMGET', KEYS[1], 'phase', 'cancelRequested', 'batch')
local phase = j[1]
if phase == 'done' or phase == 'failed' or phase == 'cancelled' then return false end
if ARGV[2] == '1' and j[2] == '1' then return '!cancel' end
local ev = cjson.decode(ARGV[1])
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'state', ARGV[3], 'jobId', ARGV[4], 'updatedAt', ev.at)
  if ARGV[5] then redis.call('HSET', KEYS[2], 'addresses', ARGV[5]) end
end
local err = ''
if type(ev.error) == 'table' then err = cjson.encode(ev.error) end
return append_event({ job = KEYS[1], json = ARGV[1], phase = ev.phase, percent = tostring(ev.percent),
  message = ev.message, at = ev.at, host = ev.host or '', err = err, batch = j[3] })
`,
};

/** Jobs' records and progress events in Redis: one stream per job, one for everything. */
export class EventLog {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #append: BatchedScript;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
    this.#append = new BatchedScript(redis, APPEND);
  }

  /** Creates a job's record. */
  async createJob(record: {
    jobId: string;
    kind: JobKind;
    vm: string;
    hostId?: string;
    tenant?: string;
    batchId?: string;
    callbackUrl?: string;
  }): Promise<void> {
    const now = new Date().toISOString();
    await this.#redis
      .multi()
      .hset(this.#keys.job(record.jobId), {
        jobId: record.jobId,
        kind: record.kind,
        vm: record.vm,
        ...(record.hostId === undefined ? {} : { hostId: record.hostId }),
        phase: "queued",
        percent: "0",
        message: "",
        createdAt: now,
        updatedAt: now,
        ...(record.tenant === undefined ? {} : { tenant: record.tenant }),
        ...(record.batchId === undefined ? {} : { batch: record.batchId }),
        ...(record.callbackUrl === undefined ? {} : { callbackUrl: record.callbackUrl }),
      })
      .expire(this.#keys.job(record.jobId), JOB_TTL_SEC)
      .exec();
  }

  /** Appends an event; returns its stream id, or undefined when the job had already ended. */
  async append(input: EventInput): Promise<string | undefined> {
    const event = toEvent(input);
    const vm = input.vmState;
    const id = await this.#append.call(
      vm === undefined ? [this.#keys.job(input.jobId)] : [this.#keys.job(input.jobId), vm.key],
      vm === undefined
        ? [JSON.stringify(event), input.unlessCancelled === true ? "1" : "0"]
        : [
            JSON.stringify(event),
            input.unlessCancelled === true ? "1" : "0",
            vm.state,
            input.jobId,
            ...(vm.addresses === undefined ? [] : [JSON.stringify(vm.addresses)]),
          ],
    );
    if (id === "!cancel") throw new VirtfleetError("CANCELLED", "cancelled by request");
    return typeof id === "string" ? id : undefined;
  }

  /**
   * A job's record, parsed with the JobRecord schema; undefined when there is none. A record that
   * does not parse throws INTERNAL naming the field at fault.
   */
  async getJob(jobId: string): Promise<JobRecord | undefined> {
    const h = await this.#redis.hgetall(this.#keys.job(jobId));
    if (h.jobId === undefined) return undefined;
    return parseRecord(JobRecord, h, `the record of job ${jobId}`);
  }

  /** Marks the job as asked to be cancelled; the worker checks the mark between phases. */
  async requestCancel(jobId: string): Promise<void> {
    await this.#redis.hset(this.#keys.job(jobId), "cancelRequested", "1");
  }

  /** Only the job's phase and whether it was asked to be cancelled (cheaper than getJob). */
  async progress(jobId: string): Promise<{ phase: Phase | undefined; cancelRequested: boolean }> {
    const [phase, cancel] = await this.#redis.hmget(this.#keys.job(jobId), "phase", "cancelRequested");
    return { phase: (phase ?? undefined) as Phase | undefined, cancelRequested: cancel === "1" };
  }

  /** Events after `afterId` ("0" for all); with `blockMs`, waits that long for the first new one. */
  async read(jobId: string, afterId = "0", blockMs?: number, redis: Redis = this.#redis): Promise<StreamedEvent[]> {
    const key = this.#keys.jobEvents(jobId);
    const reply =
      blockMs === undefined
        ? await redis.xread("COUNT", 1000, "STREAMS", key, afterId)
        : await redis.xread("COUNT", 1000, "BLOCK", blockMs, "STREAMS", key, afterId);
    return parseStreamReply(reply);
  }

  /**
   * Every job's events from all-events stream entries after `afterEntry` (a stream entry id, "$" for
   * only new ones); with `blockMs`, waits that long for the first new entry. Returns the events and
   * the last entry read (to pass as the next `afterEntry`).
   */
  async readAll(
    afterEntry: string,
    blockMs: number | undefined,
    redis: Redis = this.#redis,
  ): Promise<{ events: StreamedEvent[]; lastEntry: string }> {
    const key = this.#keys.allEvents();
    const reply = (
      blockMs === undefined
        ? await redis.xread("COUNT", 100, "STREAMS", key, afterEntry)
        : await redis.xread("COUNT", 100, "BLOCK", blockMs, "STREAMS", key, afterEntry)
    ) as StreamReply;
    const entries = unpackAllEvents(reply?.[0]?.[1] ?? []);
    return { events: entries.flatMap((e) => e.events), lastEntry: entries.at(-1)?.entryId ?? afterEntry };
  }

  /** A batch's events after `afterId`; with `blockMs`, waits that long for the first new one. */
  async readBatch(
    batchId: string,
    afterId: string,
    blockMs: number | undefined,
    redis: Redis = this.#redis,
  ): Promise<StreamedEvent[]> {
    const key = this.#keys.batchEvents(batchId);
    const reply =
      blockMs === undefined
        ? await redis.xread("COUNT", 1000, "STREAMS", key, afterId)
        : await redis.xread("COUNT", 1000, "BLOCK", blockMs, "STREAMS", key, afterId);
    return parseStreamReply(reply as StreamReply);
  }
}

export type StreamEntries = [id: string, fields: string[]][];
export type StreamReply = [key: string, items: StreamEntries][] | null;

/** An event read back from Redis, parsed again (never trusted); undefined when it is not one. */
function parseEvent(raw: string, id: string): StreamedEvent | undefined {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = ProgressEvent.safeParse(json);
  return parsed.success ? { ...parsed.data, id } : undefined;
}

/** The events of an XREAD reply, in order (entries that are not events are skipped). */
export function parseStreamReply(reply: StreamReply): StreamedEvent[] {
  const out: StreamedEvent[] = [];
  for (const [, items] of reply ?? []) {
    for (const [id, fields] of items) {
      const raw = fields[fields.indexOf("e") + 1];
      const event = raw === undefined ? undefined : parseEvent(raw, id);
      if (event !== undefined) out.push(event);
    }
  }
  return out;
}

/**
 * The events of all-events stream entries (each holds one script run's events as repeated `e`
 * fields), in order, each with the id `<entry id>/<place in the entry>`.
 */
export function unpackAllEvents(entries: StreamEntries): { entryId: string; events: StreamedEvent[] }[] {
  return entries.map(([entryId, fields]) => {
    const events: StreamedEvent[] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const event = fields[i] === "e" ? parseEvent(fields[i + 1] as string, `${entryId}/${i / 2}`) : undefined;
      if (event !== undefined) events.push(event);
    }
    return { entryId, events };
  });
}
