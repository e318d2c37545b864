import { isTerminal, type StreamedEvent } from "@virtfleet/core";
import {
  compareStreamIds,
  EVENT_HUB_BLOCK_MS,
  JobEventHub,
  type JobFollower,
  parseStreamReply,
  type StreamReply,
} from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { problem } from "./problem.js";

/** Redis connections shared by every open event stream (`VIRTFLEET_API_STREAM_CONNECTIONS`). */
export const DEFAULT_STREAM_CONNECTIONS = 2;
/** Event streams one token may hold open at once (`VIRTFLEET_API_MAX_STREAMS_PER_TOKEN`). */
export const DEFAULT_MAX_STREAMS_PER_TOKEN = 20;
/** A stream with nothing to send gets a comment this often (keeps proxies open) and is checked for its end. */
export const STREAM_KEEP_ALIVE_MS = 15_000;
/** How long one shared blocking read waits at most (a stream that joins wakes it). */
export const STREAM_BLOCK_MS = EVENT_HUB_BLOCK_MS;
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
  /** How long one shared blocking read waits at most. Default STREAM_BLOCK_MS. */
  blockMs?: number;
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
  /** `catching-up`: being read on the shared connection; `waiting`: followed in a hub's blocking read. */
  state: "catching-up" | "waiting" | "ended" = "catching-up";
  /** Where it waits, while it does. */
  follower: { hub: JobEventHub; f: JobFollower } | undefined;

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
    return fresh.some((e) => isTerminal(e.phase));
  }

  /** Leaves the hub it waits in, if any. */
  leave(): void {
    const w = this.follower;
    this.follower = undefined;
    w?.hub.unfollow(w.f);
  }
}

/**
 * Server-Sent Event streams over a bounded set of Redis connections: each stream is caught up on
 * the shared connection, then waits in one of `connections` hubs (the fleet's JobEventHub, as a
 * FleetClient's followed jobs do: a single blocking XREAD over the streams of all its followers,
 * woken when one joins). A stream ends when its job or batch has ended (checked whenever a read
 * finds nothing new: after a terminal event, after a keep-alive's silence, whatever Last-Event-ID
 * said); one token holds at most `maxPerToken`.
 */
export class EventStreams {
  readonly #o: EventStreamsOptions;
  readonly #hubs: JobEventHub[] = [];
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

  /** Reads a stream on the shared connection until nothing is new; then ends it or has it wait in a hub. */
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
        void this.#wait(sub);
        return;
      }
    } catch (error) {
      if (sub.isEnded()) return;
      // The client resumes with Last-Event-ID.
      this.#o.logger.warn({ err: error }, "event stream failed");
      this.#end(sub, true);
    }
  }

  /**
   * Follows a caught-up stream in a hub, sending what arrives, until a terminal event or a keep-alive's
   * silence: then it is caught up again (which reads what is left and asks whether it ended).
   */
  async #wait(sub: Subscription): Promise<void> {
    const hub = this.#hub();
    const f = hub.followStream(sub.source.key, sub.last);
    sub.state = "waiting";
    sub.follower = { hub, f };
    const keepAliveMs = this.#o.keepAliveMs ?? STREAM_KEEP_ALIVE_MS;
    try {
      for (;;) {
        const events = await hub.next(f, keepAliveMs);
        if (sub.state !== "waiting") return;
        if (events.length === 0) {
          sub.sink.keepAlive();
          break;
        }
        if (sub.deliver(events)) break;
      }
    } catch (error) {
      if (sub.state !== "waiting") return;
      this.#o.logger.warn({ err: error }, "event streams: read failed; retrying");
      await new Promise((r) => setTimeout(r, 500));
      if (sub.state !== "waiting") return;
    } finally {
      if (sub.follower?.f === f) sub.leave();
    }
    void this.#catchUp(sub);
  }

  /** The hub with the fewest streams; a new one (a new connection) while there are fewer than allowed. */
  #hub(): JobEventHub {
    const max = Math.max(1, this.#o.connections ?? DEFAULT_STREAM_CONNECTIONS);
    let best = this.#hubs[0];
    for (const h of this.#hubs) if (best === undefined || h.size < best.size) best = h;
    if (best === undefined || (best.size > 0 && this.#hubs.length < max)) {
      best = new JobEventHub(this.#o.connect, this.#o.redis, undefined, {
        blockMs: this.#o.blockMs ?? STREAM_BLOCK_MS,
      });
      this.#hubs.push(best);
    }
    return best;
  }

  #end(sub: Subscription, endSink: boolean): void {
    if (sub.state === "ended") return;
    sub.state = "ended";
    sub.leave();
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
    await Promise.all(this.#hubs.map((h) => h.close()));
  }
}
