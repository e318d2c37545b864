import type { StreamedEvent } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { parseStreamReply, type StreamReply } from "./event-log.js";

/** How long the shared blocking read waits at most; a follower that joins meanwhile wakes it. */
const BLOCK_MS = 1000;
/** Entries read from one job's stream at a time; a follower holding this many unread is read no more. */
const COUNT = 1000;

/** Compares two stream entry ids (`<ms>-<seq>`; "0" is the start). */
export function compareStreamIds(a: string, b: string): number {
  const [am = "0", as = "0"] = a.split("-");
  const [bm = "0", bs = "0"] = b.split("-");
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

/** One job's events being followed: read by the hub into `unread`, taken by its JobHandle. */
export interface JobFollower {
  readonly key: string;
  /** The last event read (handed to `unread`). */
  last: string;
  unread: StreamedEvent[];
  error: unknown;
  wake: (() => void) | undefined;
}

/**
 * The events of every job a FleetClient follows, read on ONE blocking connection: one XREAD over
 * all the followed jobs' streams (each from where its follower is) wakes when any of them gets an
 * event. A hundred jobs followed at once cost Redis and this process one read per round of events,
 * not a hundred (each a socket write, a blocked client and a reply). A follower that joins while
 * the read blocks wakes it (CLIENT UNBLOCK on the client's shared connection), so its first events
 * are not held up; a follower whose events are not taken is not read further (at most COUNT held).
 */
export class JobEventHub {
  readonly #connect: () => Redis;
  readonly #control: Redis;
  readonly #keys: Keys;
  readonly #followers = new Set<JobFollower>();
  #redis: Redis | undefined;
  #clientId: number | undefined;
  #loop: Promise<void> | undefined;
  #idle: (() => void) | undefined;
  /** The read in flight blocks (set while it is sent and unanswered); its number. */
  #blocked = false;
  #read = 0;
  #unblocking = false;
  #stopped = false;

  /** `connect` gives the blocking connection (called once, when first needed); `control` is shared. */
  constructor(connect: () => Redis, control: Redis, keys: Keys) {
    this.#connect = connect;
    this.#control = control;
    this.#keys = keys;
  }

  /** Starts following a job's events after `afterId` ("0": all of them). */
  follow(jobId: string, afterId: string): JobFollower {
    const f: JobFollower = {
      key: this.#keys.jobEvents(jobId),
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

  unfollow(f: JobFollower): void {
    this.#followers.delete(f);
  }

  /** The follower's unread events; when there are none, waits up to `waitMs` for some ([] then). */
  async next(f: JobFollower, waitMs: number): Promise<StreamedEvent[]> {
    if (f.unread.length === 0 && f.error === undefined) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        f.wake = resolve;
        timer = setTimeout(resolve, waitMs);
      });
      clearTimeout(timer);
      f.wake = undefined;
    }
    if (f.error !== undefined) throw f.error;
    const events = f.unread;
    f.unread = [];
    // It held as many as one read brings, so was left out of the reads: it is read again now.
    if (events.length >= COUNT) this.#nudge();
    return events;
  }

  /** Stops reading; followers still waiting get an error. Safe to call twice. */
  async close(): Promise<void> {
    this.#stopped = true;
    this.#redis?.disconnect();
    this.#idle?.();
    await this.#loop;
    for (const f of this.#followers) this.#fail(f, new Error("the fleet client is closed"));
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
    const learnId = () => {
      redis.client("ID").then(
        (id) => {
          this.#clientId = Number(id);
        },
        () => undefined,
      );
    };
    redis.on("ready", learnId);
    while (!this.#stopped) {
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
      const keys = [...byKey.keys()];
      let reply: StreamReply;
      this.#read++;
      this.#blocked = true;
      try {
        reply = (await redis.xread(
          "COUNT",
          COUNT,
          "BLOCK",
          BLOCK_MS,
          "STREAMS",
          ...keys,
          ...keys.map((k) => byKey.get(k)?.from ?? "0"),
        )) as StreamReply;
      } catch (error) {
        this.#blocked = false;
        if (this.#stopped) return;
        // As a follower's own read would: the error goes to everyone waiting on this read.
        for (const { followers } of byKey.values()) for (const f of followers) this.#fail(f, error);
        continue;
      } finally {
        this.#blocked = false;
      }
      for (const [key, items] of reply ?? []) {
        const events = parseStreamReply([[key, items]]);
        // Past every entry read, events or not (one that is not an event is not read again).
        const end = items.at(-1)?.[0];
        for (const f of byKey.get(key)?.followers ?? []) {
          if (!this.#followers.has(f)) continue;
          const fresh = events.filter((e) => compareStreamIds(e.id, f.last) > 0);
          if (end !== undefined && compareStreamIds(end, f.last) > 0) f.last = end;
          if (fresh.length === 0) continue;
          f.unread.push(...fresh);
          f.wake?.();
        }
      }
      // The followers just woken take their events and ask again before the next read.
      await new Promise((r) => setImmediate(r));
    }
  }
}
