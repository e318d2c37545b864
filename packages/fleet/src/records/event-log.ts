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
import { loadLua } from "../redis/lua.js";
import { BatchedScript } from "../redis/scripts.js";

/** How long a job's record and events are kept after its last event. */
export const JOB_TTL_SEC = 7 * 24 * 3600;
export const JOB_STREAM_MAXLEN = 1000;
/** Entries kept in the all-events stream (each holds one script run's events: one to a few hundred). */
export const ALL_EVENTS_MAXLEN = 10_000;

export interface JobRecord {
  jobId: string;
  kind: JobKind;
  vm: string;
  hostId: string | undefined;
  phase: Phase;
  percent: number;
  message: string;
  createdAt: string;
  updatedAt: string;
  error: ErrorInfo | undefined;
  tenant: string | undefined;
  batchId: string | undefined;
  callbackUrl: string | undefined;
}

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

/**
 * `append_event(e)` and `flush_events()` (records/includes/append-event.lua: its header gives the
 * contract), for scripts that append events (the admission script includes it too).
 */
export const APPEND_LUA = loadLua(new URL("./includes/append-event.lua", import.meta.url));

/** The limits append_event takes (`e.limits`), as the scripts' callers pass them in ARGV. */
export const EVENT_LIMITS = { stream_maxlen: JOB_STREAM_MAXLEN, ttl: JOB_TTL_SEC, all_maxlen: ALL_EVENTS_MAXLEN };

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
local prefix = string.sub(KEYS[1], 1, string.find(KEYS[1], ':job:', 1, true) - 1)
local bhash, bstream = false, false
if j[3] then bhash = prefix .. ':batch:' .. j[3]; bstream = bhash .. ':events' end
return append_event({ job = KEYS[1], stream = KEYS[1] .. ':events', fleet = prefix .. ':events',
  batch_hash = bhash, batch_stream = bstream,
  limits = { stream_maxlen = ${JOB_STREAM_MAXLEN}, ttl = ${JOB_TTL_SEC}, all_maxlen = ${ALL_EVENTS_MAXLEN} },
  json = ARGV[1], phase = ev.phase, percent = tostring(ev.percent),
  message = ev.message, at = ev.at, host = ev.host or '', err = err })
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

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    const h = await this.#redis.hgetall(this.#keys.job(jobId));
    if (h.jobId === undefined) return undefined;
    return {
      jobId: h.jobId,
      kind: h.kind as JobKind,
      vm: h.vm ?? "",
      hostId: h.hostId,
      phase: (h.phase ?? "queued") as Phase,
      percent: Number(h.percent ?? 0),
      message: h.message ?? "",
      createdAt: h.createdAt ?? "",
      updatedAt: h.updatedAt ?? "",
      error: h.error === undefined ? undefined : (JSON.parse(h.error) as ErrorInfo),
      tenant: h.tenant,
      batchId: h.batch,
      callbackUrl: h.callbackUrl,
    };
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
