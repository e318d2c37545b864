import {
  type ErrorInfo,
  isoNow,
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
/** Entries kept in the all-events stream (each holds one script run's events: 1 to APPEND_BATCH_MAX). */
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
  /**
   * The job's batch ("" for none), when the caller knows it; otherwise the log finds it out (the
   * script refuses a wrong one and names the right one).
   */
  batchId?: string | undefined;
}

/** A progress event as stored in the streams. */
export function toEvent(input: EventInput, at = isoNow()): ProgressEvent {
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
 * The limits append_one takes (records/includes/append-event.lua: job stream MAXLEN, TTL in s,
 * all-events MAXLEN), as the scripts' callers pass them in ARGV (append-event-6.lua's 4..6, admit.lua's 18..20), made once.
 */
export const LIMIT_ARGS = [String(JOB_STREAM_MAXLEN), String(JOB_TTL_SEC), String(ALL_EVENTS_MAXLEN)] as const;

/**
 * The most appends one script run makes: a hundred events appended in one turn go as four runs (each
 * writing one all-events entry), not one. Measured on the event-latency bench (three runs each,
 * against 200): p50 4.2–5.7 ms instead of 5.6–6.6 ms, shorter GC pauses (large ioredis commands
 * leave more for the garbage collector to promote), the control plane's cost unchanged.
 */
export const APPEND_BATCH_MAX = 25;

/** How many jobs' batch ids an EventLog remembers (see EventLog.append). */
export const BATCH_OF_JOB_CACHE_SIZE = 10_000;

/** Jobs' records and progress events in Redis: one stream per job, one for everything. */
export class EventLog {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly #append: BatchedScript;
  /** The all-events stream's key (the same for every event). */
  readonly #allEvents: string;
  /** Jobs' batch ids ("" for none) learned from the append script: a job's batch never changes. */
  readonly #batchOf = new Map<string, string>();

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
    this.#allEvents = keys.allEvents();
    this.#append = new BatchedScript(
      redis,
      {
        file: new URL("./commands/append-event-6.lua", import.meta.url),
        epilogue: "flush_events()",
      },
      APPEND_BATCH_MAX,
    );
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
    const now = isoNow();
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

  /**
   * Appends an event; returns its stream id, or undefined when the job had already ended. Every key
   * the script writes is passed to it, the job's batch's too: given, remembered, or learned from
   * the script's answer (then the call is made again).
   */
  async append(input: EventInput): Promise<string | undefined> {
    const event = toEvent(input);
    const json = JSON.stringify(event);
    let batch = input.batchId ?? this.#batchOf.get(input.jobId) ?? "";
    let reply = await this.#appendOnce(input, event, json, batch);
    if (typeof reply === "string" && reply.startsWith("!batch:")) {
      batch = reply.slice("!batch:".length);
      reply = await this.#appendOnce(input, event, json, batch);
    }
    if (typeof reply === "string" && reply.startsWith("!batch:"))
      throw new Error(`job ${input.jobId}: its batch changed while appending`);
    if (reply === null) this.#batchOf.delete(input.jobId);
    else this.#remember(input.jobId, batch, input.phase);
    if (reply === "!cancel") throw new VirtfleetError("CANCELLED", "cancelled by request");
    return typeof reply === "string" ? reply : undefined;
  }

  #appendOnce(input: EventInput, event: ProgressEvent, json: string, batch: string): Promise<unknown> {
    const k = this.#keys;
    const job = k.job(input.jobId);
    const vm = input.vmState;
    return this.#append.call(
      [
        job,
        k.jobEvents(input.jobId),
        this.#allEvents,
        batch === "" ? job : k.batch(batch),
        batch === "" ? job : k.batchEvents(batch),
        vm === undefined ? job : vm.key,
      ],
      [
        json,
        input.unlessCancelled === true ? "1" : "0",
        batch,
        LIMIT_ARGS[0],
        LIMIT_ARGS[1],
        LIMIT_ARGS[2],
        vm?.state ?? "",
        input.jobId,
        vm?.addresses === undefined ? "" : JSON.stringify(vm.addresses),
        // The record's fields, apart (the script decodes no JSON).
        event.phase,
        String(event.percent),
        event.message,
        event.at,
        event.host ?? "",
        event.error === undefined ? "" : JSON.stringify(event.error),
      ],
    );
  }

  /** Keeps a job's batch for its next events (forgotten at its terminal event, or oldest first). */
  #remember(jobId: string, batch: string, phase: Phase): void {
    this.#batchOf.delete(jobId);
    if (phase === "done" || phase === "failed" || phase === "cancelled") return;
    if (this.#batchOf.size >= BATCH_OF_JOB_CACHE_SIZE) {
      const oldest = this.#batchOf.keys().next();
      if (oldest.done !== true) this.#batchOf.delete(oldest.value);
    }
    this.#batchOf.set(jobId, batch);
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
  if (!parsed.success) return undefined;
  // The parsed event is a new object (zod's): given its id in place, not copied.
  const event = parsed.data as StreamedEvent;
  event.id = id;
  return event;
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
