import { isTerminal, type StreamedEvent } from "@virtfleet/core";
import { compareStreamIds, parseStreamReply, type StreamReply } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { problem } from "./problem.js";

/** Redis connections shared by every open event stream (`VIRTFLEET_API_STREAM_CONNECTIONS`). */
export const DEFAULT_STREAM_CONNECTIONS = 2;
/** Event streams one token may hold open at once (`VIRTFLEET_API_MAX_STREAMS_PER_TOKEN`). */
export const DEFAULT_MAX_STREAMS_PER_TOKEN = 20;
/** A stream with nothing to send gets a comment this often (keeps proxies open) and is checked for its end. */
export const STREAM_KEEP_ALIVE_MS = 15_000;
/** How long one shared blocking read waits; a stream opened meanwhile joins the next read. */
const BLOCK_MS = 1000;
/** Entries read from one stream at a time. */
const COUNT = 1000;

export interface EventStreamsOptions {
  /** A new connection for blocking reads; called at most `connections` times, when first needed. */
  connect: () => Redis;
  /** For catching a stream up (non-blocking reads); shared with other work. */
  redis: Redis;
  logger: Logger;
  /** Default DEFAULT_STREAM_CONNECTIONS. */
  connections?: number;
  /** Default DEFAULT_MAX_STREAMS_PER_TOKEN. */
  maxPerToken?: number;
  /** Default STREAM_KEEP_ALIVE_MS. */
  keepAliveMs?: number;
}

/** What a stream follows: one Redis stream, and how to tell that nothing more will come. */
export interface StreamSource {
  key: string;
  /** True once the job or batch has ended; asked whenever a read finds nothing new. */
  ended: () => Promise<boolean>;
  /** Which events the caller may see (default: all); the others are skipped, not sent. */
  accept?: (event: StreamedEvent) => boolean;
}

/** Where a stream's events go (an HTTP response). */
export interface StreamSink {
  events: (events: readonly StreamedEvent[]) => void;
  keepAlive: () => void;
  end: () => void;
}

/** An open stream, as its caller holds it: closing it (the client left) frees its place. */
export interface OpenStream {
  close: () => void;
}

class Subscription {
  /** `catching-up`: being read on the shared connection; `waiting`: in a hub's blocking read. */
  state: "catching-up" | "waiting" | "ended" = "catching-up";
  idleSince = Date.now();
  hub: Hub | undefined;

  constructor(
    readonly tokenId: string,
    readonly source: StreamSource,
    readonly sink: StreamSink,
    public last: string,
  ) {}

  isEnded(): boolean {
    return this.state === "ended";
  }

  /** Sends the events after `last`; true when one of them was terminal. */
  deliver(events: readonly StreamedEvent[]): boolean {
    const fresh = events.filter((e) => compareStreamIds(e.id, this.last) > 0);
    if (fresh.length === 0) return false;
    const shown = this.source.accept === undefined ? fresh : fresh.filter(this.source.accept);
    if (shown.length > 0) this.sink.events(shown);
    this.last = fresh.at(-1)?.id ?? this.last;
    this.idleSince = Date.now();
    return fresh.some((e) => isTerminal(e.phase));
  }
}

/** One blocking connection reading, in one XREAD, the streams of every subscription it holds. */
class Hub {
  readonly subs = new Set<Subscription>();
  readonly #redis: Redis;
  readonly #logger: Logger;
  readonly #keepAliveMs: number;
  /** Called with a stream to read what is left of and check for its end. */
  readonly #recheck: (sub: Subscription) => void;
  #wake: (() => void) | undefined;
  #stopped = false;
  readonly loop: Promise<void>;

  constructor(redis: Redis, logger: Logger, keepAliveMs: number, recheck: (sub: Subscription) => void) {
    this.#redis = redis;
    this.#logger = logger;
    this.#keepAliveMs = keepAliveMs;
    this.#recheck = recheck;
    this.loop = this.#run();
  }

  add(sub: Subscription): void {
    sub.state = "waiting";
    sub.hub = this;
    this.subs.add(sub);
    this.#wake?.();
  }

  remove(sub: Subscription): void {
    this.subs.delete(sub);
    sub.hub = undefined;
  }

  stop(): void {
    this.#stopped = true;
    this.#redis.disconnect();
    this.#wake?.();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      if (this.subs.size === 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
        continue;
      }
      // One read per key, from the earliest place any of its readers is at.
      const byKey = new Map<string, { from: string; subs: Subscription[] }>();
      for (const sub of this.subs) {
        const k = byKey.get(sub.source.key);
        if (k === undefined) byKey.set(sub.source.key, { from: sub.last, subs: [sub] });
        else {
          k.subs.push(sub);
          if (compareStreamIds(sub.last, k.from) < 0) k.from = sub.last;
        }
      }
      const keys = [...byKey.keys()];
      let reply: StreamReply;
      try {
        reply = (await this.#redis.xread(
          "COUNT",
          COUNT,
          "BLOCK",
          BLOCK_MS,
          "STREAMS",
          ...keys,
          ...keys.map((k) => byKey.get(k)?.from ?? "0"),
        )) as StreamReply;
      } catch (error) {
        if (this.#stopped) return;
        this.#logger.warn({ err: error }, "event streams: read failed; retrying");
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      const now = Date.now();
      const recheck: Subscription[] = [];
      for (const [key, items] of reply ?? []) {
        const events = parseStreamReply([[key, items]]);
        for (const sub of byKey.get(key)?.subs ?? []) {
          if (sub.hub !== this || sub.state !== "waiting") continue;
          if (sub.deliver(events)) recheck.push(sub);
        }
      }
      for (const sub of this.subs) {
        if (recheck.includes(sub)) continue;
        if (now - sub.idleSince >= this.#keepAliveMs) {
          sub.sink.keepAlive();
          sub.idleSince = now;
          recheck.push(sub);
        }
      }
      // A terminal event, or a long silence: read what is left and ask whether the stream ended.
      for (const sub of recheck) {
        this.remove(sub);
        this.#recheck(sub);
      }
    }
  }
}

/**
 * Server-Sent Event streams over a bounded set of Redis connections: each stream is caught up on
 * the shared connection, then waits in one of `connections` hubs, each a single blocking XREAD over
 * the keys of all its streams. A stream ends when its job or batch has ended (checked whenever a
 * read finds nothing new, whatever Last-Event-ID said); one token holds at most `maxPerToken`.
 */
export class EventStreams {
  readonly #o: EventStreamsOptions;
  readonly #hubs: Hub[] = [];
  readonly #subs = new Set<Subscription>();
  readonly #perToken = new Map<string, number>();
  #closed = false;

  constructor(options: EventStreamsOptions) {
    this.#o = options;
  }

  /** Streams open now. */
  get size(): number {
    return this.#subs.size;
  }

  /**
   * Opens a stream of `source`'s events after `after`. RATE_LIMITED (429) when the token already
   * holds its share; a stream opened while closing ends at once.
   */
  open(tokenId: string, source: StreamSource, after: string, sink: StreamSink): OpenStream {
    const max = this.#o.maxPerToken ?? DEFAULT_MAX_STREAMS_PER_TOKEN;
    const held = this.#perToken.get(tokenId) ?? 0;
    if (held >= max)
      throw problem("RATE_LIMITED", `this token already has ${held} event streams open (at most ${max} at once)`);
    const sub = new Subscription(tokenId, source, sink, after);
    if (this.#closed) {
      queueMicrotask(() => sink.end());
      return { close: () => undefined };
    }
    this.#perToken.set(tokenId, held + 1);
    this.#subs.add(sub);
    void this.#catchUp(sub);
    return { close: () => this.#end(sub, false) };
  }

  /** Reads a stream on the shared connection until nothing is new; then ends it or hands it to a hub. */
  async #catchUp(sub: Subscription): Promise<void> {
    sub.state = "catching-up";
    try {
      for (;;) {
        const reply = (await this.#o.redis.xread("COUNT", COUNT, "STREAMS", sub.source.key, sub.last)) as StreamReply;
        if (sub.state !== "catching-up") return;
        const events = parseStreamReply(reply);
        if (events.length > 0) {
          sub.deliver(events);
          continue;
        }
        const ended = await sub.source.ended();
        if (sub.state !== "catching-up") return;
        if (ended) return this.#end(sub, true);
        this.#hub().add(sub);
        return;
      }
    } catch (error) {
      if (sub.isEnded()) return;
      // The client resumes with Last-Event-ID.
      this.#o.logger.warn({ err: error }, "event stream failed");
      this.#end(sub, true);
    }
  }

  /** The hub with the fewest streams; a new one (a new connection) while there are fewer than allowed. */
  #hub(): Hub {
    const max = Math.max(1, this.#o.connections ?? DEFAULT_STREAM_CONNECTIONS);
    let best = this.#hubs[0];
    for (const h of this.#hubs) if (best === undefined || h.subs.size < best.subs.size) best = h;
    if (best === undefined || (best.subs.size > 0 && this.#hubs.length < max)) {
      best = new Hub(this.#o.connect(), this.#o.logger, this.#o.keepAliveMs ?? STREAM_KEEP_ALIVE_MS, (sub) => {
        void this.#catchUp(sub);
      });
      this.#hubs.push(best);
    }
    return best;
  }

  #end(sub: Subscription, endSink: boolean): void {
    if (sub.state === "ended") return;
    sub.state = "ended";
    sub.hub?.remove(sub);
    this.#subs.delete(sub);
    const held = (this.#perToken.get(sub.tokenId) ?? 1) - 1;
    if (held <= 0) this.#perToken.delete(sub.tokenId);
    else this.#perToken.set(sub.tokenId, held);
    if (endSink) sub.sink.end();
  }

  /** Ends every stream and closes the connections. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const sub of [...this.#subs]) this.#end(sub, true);
    for (const h of this.#hubs) h.stop();
    await Promise.all(this.#hubs.map((h) => h.loop));
  }
}
