import { createHmac } from "node:crypto";
import { isTerminal, type StreamedEvent } from "@virtfleet/core";
import { type EventLog, type Keys, unpackAllEvents } from "@virtfleet/queue";
import type { Redis } from "ioredis";
import pRetry from "p-retry";
import type { Logger } from "pino";

export const SIGNATURE_HEADER = "x-virtfleet-signature";
export const TIMESTAMP_HEADER = "x-virtfleet-timestamp";

/** `sha256=<hex>` of HMAC-SHA256(secret, `${timestamp}.${body}`). */
export function sign(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

export interface EventTailOptions {
  redis: Redis;
  keys: Keys;
  log: EventLog;
  logger: Logger;
  /** HMAC key for webhook signatures. */
  secret: string;
  /** Called with every event (metrics). */
  onEvent?: (e: StreamedEvent) => void;
  /** Webhook attempts per event. Default 6. */
  attempts?: number;
  minTimeoutMs?: number;
}

const GROUP = "virtfleet-api";

/**
 * Follows every job's events through a Redis consumer group (so an API restart misses none): feeds
 * metrics, and POSTs each terminal event to the job's `callbackUrl`, signed, retried with
 * exponential backoff.
 */
export class EventTail {
  readonly #o: EventTailOptions;
  readonly #consumer = `api-${process.pid}`;
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(options: EventTailOptions) {
    this.#o = options;
  }

  async start(): Promise<void> {
    try {
      await this.#o.redis.xgroup("CREATE", this.#o.keys.allEvents(), GROUP, "$", "MKSTREAM");
    } catch (error) {
      if (!String((error as Error).message).includes("BUSYGROUP")) throw error;
    }
    this.#running = true;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const { redis, keys } = this.#o;
    while (this.#running) {
      try {
        const reply = (await redis.xreadgroup(
          "GROUP",
          GROUP,
          this.#consumer,
          "COUNT",
          100,
          "BLOCK",
          1000,
          "STREAMS",
          keys.allEvents(),
          ">",
        )) as [string, [string, string[]][]][] | null;
        for (const [, items] of reply ?? []) {
          // An entry holds one script run's events, in order.
          for (const { entryId, events } of unpackAllEvents(items)) {
            for (const e of events) await this.#handle(e);
            await redis.xack(keys.allEvents(), GROUP, entryId);
          }
        }
      } catch (error) {
        if (this.#running) {
          this.#o.logger.warn({ err: error }, "event tail: read failed; retrying");
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
  }

  async #handle(e: StreamedEvent): Promise<void> {
    this.#o.onEvent?.(e);
    if (!isTerminal(e.phase)) return;
    const record = await this.#o.log.getJob(e.jobId);
    const url = record?.callbackUrl;
    if (url === undefined) return;
    // Delivered in the background: a slow receiver does not hold up the others.
    void this.deliver(url, e).catch((error: unknown) =>
      this.#o.logger.warn({ err: error, jobId: e.jobId, url }, "webhook gave up"),
    );
  }

  /** POSTs one event, signed, retrying with exponential backoff until a 2xx. */
  async deliver(url: string, e: StreamedEvent): Promise<void> {
    const body = JSON.stringify(e);
    await pRetry(
      async () => {
        const timestamp = String(Math.floor(Date.now() / 1000));
        const res = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-virtfleet-event-id": e.id,
            [TIMESTAMP_HEADER]: timestamp,
            [SIGNATURE_HEADER]: sign(this.#o.secret, timestamp, body),
          },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        if (!res.ok) throw new Error(`webhook answered ${res.status}`);
      },
      { retries: (this.#o.attempts ?? 6) - 1, minTimeout: this.#o.minTimeoutMs ?? 500, factor: 2, randomize: true },
    );
    this.#o.logger.info({ jobId: e.jobId, url, phase: e.phase }, "webhook delivered");
  }

  async close(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}
