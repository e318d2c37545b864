import type { StreamedEvent } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { sendFlat } from "../redis/flat-command.js";
import type { Keys } from "../redis/keys.js";
import { parseStreamReply, type StreamReply, unpackAllEvents } from "./event-log.js";

/** How long the shared blocking read waits at most; a follower that joins meanwhile wakes it. */
export const EVENT_HUB_BLOCK_MS = 1000;
/** Entries read from one stream at a time; a follower holding this many unread is read no more. */
const COUNT = 1000;

export interface JobEventHubOptions {
  /** How long one blocking read waits at most (a follower joining wakes it). Default EVENT_HUB_BLOCK_MS. */
  blockMs?: number;
}

/** Compares two decimal numbers written without a sign (leading zeros allowed; "" is 0). */
function compareDecimal(x: string, y: string): number {
  const a = x === "" ? "0" : x;
  const b = y === "" ? "0" : y;
  let i = 0;
  let j = 0;
  while (i < a.length - 1 && a.charCodeAt(i) === 48) i++;
  while (j < b.length - 1 && b.charCodeAt(j) === 48) j++;
  const la = a.length - i;
  const lb = b.length - j;
  if (la !== lb) return la < lb ? -1 : 1;
  for (; i < a.length; i++, j++) {
    const d = a.charCodeAt(i) - b.charCodeAt(j);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

const STREAM_ID = /^\d*(-\d*)?$/;

/**
 * Compares two stream entry ids (`<ms>-<seq>`; "0" is the start), exactly, whatever their size: by
 * their digits, without BigInt (called for every event each follower is handed). A string that is
 * not an id throws.
 */
export function compareStreamIds(a: string, b: string): number {
  if (a === b) return 0;
  if (!STREAM_ID.test(a) || !STREAM_ID.test(b)) throw new SyntaxError(`not a stream id: ${a} or ${b}`);
  const ai = a.indexOf("-");
  const bi = b.indexOf("-");
  const ms = compareDecimal(ai < 0 ? a : a.slice(0, ai), bi < 0 ? b : b.slice(0, bi));
  if (ms !== 0) return ms;
  return compareDecimal(ai < 0 ? "" : a.slice(ai + 1), bi < 0 ? "" : b.slice(bi + 1));
}

/**
 * How a followed stream holds its events: `events`, one event an entry (a job's stream, a batch's),
 * its id the entry's; `packed`, several an entry (the all-events stream, see `unpackAllEvents`),
 * each with the id `<entry id>/<place in the entry>`.
 */
export type StreamFormat = "events" | "packed";

/** The stream entry an event was read from (a packed event's id is `<entry id>/<place>`). */
function entryOf(eventId: string, packed: boolean): string {
  if (!packed) return eventId;
  const slash = eventId.indexOf("/");
  return slash < 0 ? eventId : eventId.slice(0, slash);
}

/** One stream's events being followed: read by the hub into `unread`, taken by its reader. */
export interface JobFollower {
  /** The stream (a job's events, a batch's, or all of them). */
  readonly key: string;
  readonly format: StreamFormat;
  /** The last entry read (its events handed to `unread`). */
  last: string;
  unread: StreamedEvent[];
  error: unknown;
  wake: (() => void) | undefined;
}

/**
 * The events of every job a FleetClient follows (or every stream an API server streams to its
 * clients), read on ONE blocking connection: one XREAD over all the followed streams (each from where
 * its follower is) wakes when any of them gets an event. A hundred jobs followed at once cost Redis and this process one read per round of events,
 * not a hundred (each a socket write, a blocked client and a reply). A follower that joins while
 * the read blocks wakes it (CLIENT UNBLOCK on the client's shared connection), so its first events
 * are not held up; a follower whose events are not taken is not read further (at most COUNT held).
 */
export class JobEventHub {
  readonly #connect: () => Redis;
  readonly #control: Redis;
  readonly #keys: Keys | undefined;
  readonly #blockMs: number;
  readonly #followers = new Set<JobFollower>();
  /**
   * Each follower's wait timer (with its length), made at its first wait and re-armed (refresh) at
   * each next one: no timer made and cleared for every event it is handed. Cleared at unfollow.
   */
  readonly #timers = new Map<JobFollower, { timer: NodeJS.Timeout; waitMs: number }>();
  #redis: Redis | undefined;
  #clientId: number | undefined;
  #loop: Promise<void> | undefined;
  #idle: (() => void) | undefined;
  /** The read in flight blocks (set while it is sent and unanswered); its number. */
  #blocked = false;
  #read = 0;
  #unblocking = false;
  /** Whether a blocked read is answered with one stream only (Redis before 7.2): see #run. */
  #pairReads = true;
  #stopped = false;

  /**
   * `connect` gives the blocking connection (called once, when first needed); `control` is shared
   * (it sends CLIENT UNBLOCK). `keys` names jobs' streams, for `follow` (not needed by `followStream`).
   */
  constructor(connect: () => Redis, control: Redis, keys?: Keys, options: JobEventHubOptions = {}) {
    this.#connect = connect;
    this.#control = control;
    this.#keys = keys;
    this.#blockMs = options.blockMs ?? EVENT_HUB_BLOCK_MS;
  }

  /** Followers now. */
  get size(): number {
    return this.#followers.size;
  }

  /** Starts following a job's events after `afterId` ("0": all of them). */
  follow(jobId: string, afterId: string): JobFollower {
    if (this.#keys === undefined) throw new Error("JobEventHub.follow needs the fleet's keys");
    return this.followStream(this.#keys.jobEvents(jobId), afterId);
  }

  /**
   * Starts following any event stream (a job's, a batch's, or in the `packed` format the all-events
   * stream) after the entry `afterId` ("0": all of it). Followers of one stream follow it in one format.
   */
  followStream(key: string, afterId: string, format: StreamFormat = "events"): JobFollower {
    const f: JobFollower = {
      key,
      format,
      last: afterId,
      unread: [],
      error: undefined,
      wake: undefined,
    };
    if (this.#stopped) {
      f.error = new Error("the fleet client is closed");
      return f;
    }
    this.#followers.add(f);
    this.#loop ??= this.#run();
    this.#nudge();
    return f;
  }

  /** Stops following; a `next` waiting for it returns (what it holds, or nothing). */
  unfollow(f: JobFollower): void {
    this.#followers.delete(f);
    this.#disarm(f);
    f.wake?.();
  }

  /** The follower's unread events; when there are none, waits up to `waitMs` for some ([] then). */
  async next(f: JobFollower, waitMs: number): Promise<StreamedEvent[]> {
    if (f.unread.length === 0 && f.error === undefined && this.#followers.has(f)) {
      this.#arm(f, waitMs);
      await new Promise<void>((resolve) => {
        f.wake = resolve;
      });
      f.wake = undefined;
    }
    if (f.error !== undefined) throw f.error;
    const events = f.unread;
    f.unread = [];
    // It held as many as one read brings, so was left out of the reads: it is read again now.
    if (events.length >= COUNT) this.#nudge();
    return events;
  }

  /** Wakes the follower's next wait `waitMs` from now (its timer re-armed, or made). */
  #arm(f: JobFollower, waitMs: number): void {
    const armed = this.#timers.get(f);
    if (armed !== undefined && armed.waitMs === waitMs) {
      armed.timer.refresh();
      return;
    }
    if (armed !== undefined) clearTimeout(armed.timer);
    // A timer that fires between waits wakes no one (a wait re-arms it). Unref'd: one left armed
    // after a wait that ended early does not keep the process alive (the hub's connection does,
    // while it reads).
    this.#timers.set(f, { timer: setTimeout(() => f.wake?.(), waitMs).unref(), waitMs });
  }

  #disarm(f: JobFollower): void {
    const armed = this.#timers.get(f);
    if (armed === undefined) return;
    clearTimeout(armed.timer);
    this.#timers.delete(f);
  }

  /** Stops reading; followers still waiting get an error. Safe to call twice. */
  async close(): Promise<void> {
    this.#stopped = true;
    this.#redis?.disconnect();
    this.#idle?.();
    await this.#loop;
    for (const f of this.#followers) this.#fail(f, new Error("the fleet client is closed"));
    for (const f of [...this.#timers.keys()]) this.#disarm(f);
  }

  #fail(f: JobFollower, error: unknown): void {
    f.error = error;
    f.wake?.();
  }

  /** Makes the reading loop start a new read that includes every follower now. */
  #nudge(): void {
    if (this.#idle !== undefined) {
      this.#idle();
      return;
    }
    if (!this.#blocked || this.#unblocking || this.#clientId === undefined) return;
    // One wake-up for every follower that joins in this turn of the event loop.
    this.#unblocking = true;
    const read = this.#read;
    setImmediate(() => void this.#unblock(read));
  }

  async #unblock(read: number): Promise<void> {
    try {
      while (this.#blocked && this.#read === read && !this.#stopped) {
        // 0: the read was not blocking yet (still on its way); try again shortly.
        if (Number(await this.#control.client("UNBLOCK", String(this.#clientId))) === 1) return;
        await new Promise((r) => setTimeout(r, 1));
      }
    } catch {
      // Not allowed (an ACL without CLIENT), or Redis away: the joiner waits for the read's end.
    } finally {
      this.#unblocking = false;
    }
  }

  async #run(): Promise<void> {
    const redis = this.#connect();
    this.#redis = redis;
    // A new connection is a new client: its id is asked again before the next read (asked on
    // "ready" it would queue behind a blocking read resent on reconnect, and come too late).
    redis.on("close", () => {
      this.#clientId = undefined;
    });
    while (!this.#stopped) {
      if (this.#clientId === undefined && this.#followers.size > 0) {
        // Needed to wake the read (CLIENT UNBLOCK) when a follower joins; asked ahead of the read.
        try {
          const version = /redis_version:(\d+)\.(\d+)/.exec(await redis.info("server"));
          this.#pairReads = version === null || Number(version[1]) * 100 + Number(version[2]) < 702;
          this.#clientId = Number(await redis.client("ID"));
        } catch {
          // Redis away: the read below fails too (and tells the followers).
        }
        if (this.#stopped) return;
      }
      // One read per stream, from the earliest place any of its followers is at.
      const byKey = new Map<string, { from: string; followers: JobFollower[] }>();
      for (const f of this.#followers) {
        if (f.unread.length >= COUNT || f.error !== undefined) continue;
        const k = byKey.get(f.key);
        if (k === undefined) byKey.set(f.key, { from: f.last, followers: [f] });
        else {
          k.followers.push(f);
          if (compareStreamIds(f.last, k.from) < 0) k.from = f.last;
        }
      }
      if (byKey.size === 0) {
        await new Promise<void>((resolve) => {
          this.#idle = resolve;
        });
        this.#idle = undefined;
        continue;
      }
      // The reads are sent as FlatCommands (one string each: a hundred streams make hundreds of
      // arguments, each a few strings for ioredis to build and the garbage collector to clear).
      const streams: string[] = new Array(2 * byKey.size);
      let at = 0;
      for (const [key, { from }] of byKey) {
        streams[at] = key;
        streams[at + byKey.size] = from;
        at++;
      }
      let reply: StreamReply;
      let rest: Promise<StreamReply> | undefined;
      this.#read++;
      this.#blocked = true;
      try {
        const blocking = sendFlat(redis, "xread", [
          "COUNT",
          String(COUNT),
          "BLOCK",
          String(this.#blockMs),
          "STREAMS",
          ...streams,
        ]);
        // Redis before 7.2 answers a blocked XREAD with the ONE stream that woke it: the same read,
        // not blocking, sent behind it runs as soon as it is answered (no round trip) and brings
        // the other streams' events of the same write (and that stream's again, left out below).
        if (this.#pairReads)
          rest = sendFlat(redis, "xread", ["COUNT", String(COUNT), "STREAMS", ...streams]) as Promise<StreamReply>;
        rest?.catch(() => undefined);
        reply = (await blocking) as StreamReply;
        this.#blocked = false;
        this.#deliver(reply, byKey);
        if (rest !== undefined) this.#deliver(await rest, byKey);
      } catch (error) {
        this.#blocked = false;
        if (this.#stopped) return;
        // As a follower's own read would: the error goes to everyone waiting on this read.
        for (const { followers } of byKey.values()) for (const f of followers) this.#fail(f, error);
        continue;
      } finally {
        this.#blocked = false;
      }
      // The followers just woken take their events and ask again before the next read.
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Hands a read's events to its followers: each gets those after its own place, once, in order. */
  #deliver(reply: StreamReply, byKey: Map<string, { from: string; followers: JobFollower[] }>): void {
    for (const [key, all] of reply ?? []) {
      const read = byKey.get(key);
      if (read === undefined) continue;
      // Entries every follower already has (read again behind a blocking read) are not parsed again.
      let min: string | undefined;
      for (const f of read.followers) if (min === undefined || compareStreamIds(f.last, min) < 0) min = f.last;
      const items = min === undefined || min === read.from ? all : all.filter(([id]) => compareStreamIds(id, min) > 0);
      if (items.length === 0) continue;
      const packed = read.followers[0]?.format === "packed";
      const events = packed ? unpackAllEvents(items).flatMap((e) => e.events) : parseStreamReply([[key, items]]);
      // Past every entry read, events or not (one that is not an event is not read again).
      const end = items.at(-1)?.[0];
      for (const f of read.followers) {
        if (!this.#followers.has(f)) continue;
        // Everything read is after `from`; only a follower ahead of it has some already.
        const atFrom = f.last === read.from;
        const fresh = atFrom ? events : events.filter((e) => compareStreamIds(entryOf(e.id, packed), f.last) > 0);
        if (end !== undefined && (atFrom || compareStreamIds(end, f.last) > 0)) f.last = end;
        if (fresh.length === 0) continue;
        if (f.unread.length === 0) f.unread = fresh === events && read.followers.length > 1 ? [...fresh] : fresh;
        else f.unread.push(...fresh);
        f.wake?.();
      }
    }
  }
}
