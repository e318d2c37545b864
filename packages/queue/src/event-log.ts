import {
  type ErrorInfo,
  isTerminal,
  type JobKind,
  PHASE_PERCENT,
  type Phase,
  ProgressEvent,
  type StreamedEvent,
  VirtfleetError,
} from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";
import { runScript } from "./scripts.js";

/** How long a job's record and events are kept after its last event. */
const JOB_TTL_SEC = 7 * 24 * 3600;
const JOB_STREAM_MAXLEN = 1000;
const ALL_EVENTS_MAXLEN = 100_000;

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
  /** Refuse, with a CANCELLED error, when the job was asked to be cancelled (checked atomically). */
  unlessCancelled?: boolean;
}

// Appends an event unless the job already ended: a job's terminal event is its last.
// KEYS: job hash, job stream, all-events stream. ARGV: event json, phase, percent, message, at, host, error json, ttl, terminal?, maxlen, allMaxlen
// A job of a batch also appends to the batch's stream, and its terminal event counts toward the
// batch's end. ARGV[12]: the key prefix.
// ARGV[13] = '1': refuse (return '!cancel') when the job was asked to be cancelled.
const APPEND = `
local phase = redis.call('HGET', KEYS[1], 'phase')
if phase == 'done' or phase == 'failed' or phase == 'cancelled' then return false end
if ARGV[13] == '1' and redis.call('HGET', KEYS[1], 'cancelRequested') == '1' then return '!cancel' end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[10], '*', 'e', ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[11], '*', 'e', ARGV[1])
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch then
  local bkey = ARGV[12] .. ':batch:' .. batch
  redis.call('XADD', bkey .. ':events', '*', 'e', ARGV[1])
  if ARGV[9] == '1' then redis.call('HINCRBY', bkey, 'ended', 1) end
  redis.call('EXPIRE', bkey .. ':events', ARGV[8])
end
redis.call('HSET', KEYS[1], 'phase', ARGV[2], 'percent', ARGV[3], 'message', ARGV[4], 'updatedAt', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'hostId', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[7]) end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
return id
`;

/** Jobs' records and progress events in Redis: one stream per job, one for everything. */
export class EventLog {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Creates a job's record. */
  async createJob(record: {
    jobId: string;
    kind: JobKind;
    vm: string;
    hostId?: string;
    data: string;
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
        data: record.data,
        ...(record.tenant === undefined ? {} : { tenant: record.tenant }),
        ...(record.batchId === undefined ? {} : { batch: record.batchId }),
        ...(record.callbackUrl === undefined ? {} : { callbackUrl: record.callbackUrl }),
      })
      .expire(this.#keys.job(record.jobId), JOB_TTL_SEC)
      .exec();
  }

  /** Appends an event; returns its stream id, or undefined when the job had already ended. */
  async append(input: EventInput): Promise<string | undefined> {
    const event: ProgressEvent = {
      jobId: input.jobId,
      kind: input.kind,
      vm: input.vm,
      phase: input.phase,
      percent: input.percent ?? PHASE_PERCENT[input.phase],
      message: input.message,
      ...(input.host === undefined ? {} : { host: input.host }),
      at: new Date().toISOString(),
      ...(input.error === undefined ? {} : { error: input.error }),
    };
    const id = await runScript(
      this.#redis,
      APPEND,
      3,
      this.#keys.job(input.jobId),
      this.#keys.jobEvents(input.jobId),
      this.#keys.allEvents(),
      JSON.stringify(event),
      event.phase,
      String(event.percent),
      event.message,
      event.at,
      input.host ?? "",
      input.error === undefined ? "" : JSON.stringify(input.error),
      String(JOB_TTL_SEC),
      isTerminal(event.phase) ? "1" : "0",
      String(JOB_STREAM_MAXLEN),
      String(ALL_EVENTS_MAXLEN),
      this.#keys.prefix,
      input.unlessCancelled === true ? "1" : "0",
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

  /** Replaces the job's stored payload (after it was re-placed on another host). */
  async setData(jobId: string, data: string): Promise<void> {
    await this.#redis.hset(this.#keys.job(jobId), "data", data);
  }

  /** Marks the job as asked to be cancelled; the worker checks the mark between phases. */
  async requestCancel(jobId: string): Promise<void> {
    await this.#redis.hset(this.#keys.job(jobId), "cancelRequested", "1");
  }

  async cancelRequested(jobId: string): Promise<boolean> {
    return (await this.#redis.hget(this.#keys.job(jobId), "cancelRequested")) === "1";
  }

  /** Only the job's phase (cheaper than getJob). */
  async phase(jobId: string): Promise<Phase | undefined> {
    return ((await this.#redis.hget(this.#keys.job(jobId), "phase")) ?? undefined) as Phase | undefined;
  }

  /** The job's payload as the producer stored it (parse it again before use). */
  async getJobData(jobId: string): Promise<unknown> {
    const raw = await this.#redis.hget(this.#keys.job(jobId), "data");
    return raw === null ? undefined : JSON.parse(raw);
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

type StreamReply = [key: string, items: [id: string, fields: string[]][]][] | null;

function parseStreamReply(reply: StreamReply): StreamedEvent[] {
  const out: StreamedEvent[] = [];
  for (const [, items] of reply ?? []) {
    for (const [id, fields] of items) {
      const raw = fields[fields.indexOf("e") + 1];
      if (raw === undefined) continue;
      const parsed = ProgressEvent.safeParse(JSON.parse(raw));
      if (parsed.success) out.push({ ...parsed.data, id });
    }
  }
  return out;
}
