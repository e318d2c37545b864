import { createHmac } from "node:crypto";
import { isTerminal, type StreamedEvent } from "@virtfleet/core";
import { type EventLog, type Keys, unpackAllEvents } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import pLimit, { type LimitFunction } from "p-limit";
import pRetry, { AbortError } from "p-retry";
import type { Logger } from "pino";
import { Agent, request } from "undici";
import { type CallbackPolicy, guardedLookup, redactUrl, refusedTarget, scrubUrl } from "./callback-url.js";

export const SIGNATURE_HEADER = "x-virtfleet-signature";
export const TIMESTAMP_HEADER = "x-virtfleet-timestamp";

/** Webhook deliveries (HTTP requests) in flight at once, across all receivers. */
export const DEFAULT_WEBHOOK_CONCURRENCY = 8;

/**
 * A tenant's share of the deliveries in flight: half (at least one), so one tenant's slow receiver
 * cannot hold every slot and delay the other tenants' webhooks.
 */
export function tenantWebhookConcurrency(concurrency: number): number {
  return Math.max(1, Math.ceil(concurrency / 2));
}

/** `sha256=<hex>` of HMAC-SHA256(secret, `${timestamp}.${body}`). */
export function sign(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

export interface EventTailOptions {
  redis: Redis;
  keys: Keys;
  log: EventLog;
  logger: Logger;
  /** HMAC key for the signatures of jobs whose tenant has none of its own (and of jobs with no tenant). */
  secret?: string;
  /** A tenant's own HMAC key, when it has one. */
  tenantSecret?: (tenant: string) => string | undefined;
  /** Let webhooks reach loopback, private and link-local addresses. Default false. */
  allowPrivate?: boolean;
  /** Deliveries in flight at once. Default DEFAULT_WEBHOOK_CONCURRENCY. */
  concurrency?: number;
  /** Called with every event (metrics). */
  onEvent?: (e: StreamedEvent) => void;
  /** Webhook attempts per event. Default 6. */
  attempts?: number;
  minTimeoutMs?: number;
  /** Per attempt. Default 10000 ms. */
  timeoutMs?: number;
}

/** Why a delivery failed; its message never holds the callback URL's credentials or query. */
class WebhookError extends Error {
  override readonly name = "WebhookError";
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
  readonly #policy: CallbackPolicy;
  readonly #concurrency: number;
  readonly #limit: LimitFunction;
  /** Each tenant's share (jobs without a tenant share one). */
  readonly #tenantLimits = new Map<string, LimitFunction>();
  readonly #agent: Agent;
  readonly #stop = new AbortController();
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(options: EventTailOptions) {
    this.#o = options;
    this.#policy = { allowPrivate: options.allowPrivate ?? false };
    this.#concurrency = options.concurrency ?? DEFAULT_WEBHOOK_CONCURRENCY;
    this.#limit = pLimit({ concurrency: this.#concurrency, rejectOnClear: true });
    // Every connection's address is checked as it is made (redirects are never followed: undici's
    // request() does not, without a redirect interceptor).
    this.#agent = new Agent({ connect: { lookup: guardedLookup(this.#policy) } });
  }

  /** The HMAC key for a tenant's webhooks: its own, else the server's; undefined: no webhooks. */
  secretFor(tenant: string | undefined): string | undefined {
    return (tenant === undefined ? undefined : this.#o.tenantSecret?.(tenant)) ?? this.#o.secret;
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
    void this.deliver(url, e, record?.tenant).catch((error: unknown) =>
      this.#o.logger.warn(
        { err: safeError(error, url), jobId: e.jobId, url: redactUrl(url) },
        this.#stop.signal.aborted ? "webhook abandoned at shutdown" : "webhook gave up",
      ),
    );
  }

  /**
   * POSTs one event, signed with the tenant's key, retrying with exponential backoff until a 2xx.
   * A refused address or a redirect (3xx, never followed) fails at once. Credentials in the URL
   * (`user:pass@`) are sent as HTTP Basic authorization.
   */
  async deliver(url: string, e: StreamedEvent, tenant?: string): Promise<void> {
    const shown = redactUrl(url);
    const secret = this.secretFor(tenant);
    if (secret === undefined)
      throw new WebhookError(
        `no webhook secret for tenant ${tenant ?? "(none)"}: set webhookSecret or VIRTFLEET_WEBHOOK_SECRET`,
      );
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      throw new WebhookError("the callback URL is not a URL");
    }
    const refused = refusedTarget(target, this.#policy);
    if (refused !== undefined) throw new WebhookError(`the callback URL ${shown} is refused: ${refused}`);
    const headers: Record<string, string> = { "content-type": "application/json", "x-virtfleet-event-id": e.id };
    if (target.username !== "" || target.password !== "") {
      const user = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
      headers.authorization = `Basic ${Buffer.from(user).toString("base64")}`;
      target.username = "";
      target.password = "";
    }
    const body = JSON.stringify(e);
    // A tenant's share first, then a slot of all: waiting for its share holds no slot of the others'.
    const attempt = () =>
      this.#tenantLimit(tenant)(() => this.#limit(() => this.#post(target, headers, body, secret, url)));
    await pRetry(attempt, {
      retries: (this.#o.attempts ?? 6) - 1,
      minTimeout: this.#o.minTimeoutMs ?? 500,
      factor: 2,
      randomize: true,
      signal: this.#stop.signal,
      onFailedAttempt: (error) =>
        this.#o.logger.debug(
          { err: safeError(error, url), jobId: e.jobId, url: shown, attempt: error.attemptNumber },
          "webhook attempt failed",
        ),
    });
    this.#o.logger.info({ jobId: e.jobId, url: shown, phase: e.phase }, "webhook delivered");
  }

  /** One attempt: POSTs the signed event; throws unless the receiver answered 2xx. */
  async #post(target: URL, headers: Record<string, string>, body: string, secret: string, url: string): Promise<void> {
    const shown = redactUrl(url);
    const timestamp = String(Math.floor(Date.now() / 1000));
    let status: number;
    try {
      const res = await request(target, {
        method: "POST",
        dispatcher: this.#agent,
        headers: { ...headers, [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: sign(secret, timestamp, body) },
        body,
        signal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#o.timeoutMs ?? 10_000)]),
      });
      status = res.statusCode;
      await res.body.dump();
    } catch (error) {
      throw new WebhookError(`POST ${shown} failed: ${safeError(error, url).message}`);
    }
    if (status >= 300 && status < 400)
      throw new AbortError(new WebhookError(`${shown} answered ${status}: redirects are not followed`));
    if (status < 200 || status >= 300) throw new WebhookError(`${shown} answered ${status}`);
  }

  #tenantLimit(tenant: string | undefined): LimitFunction {
    const key = tenant ?? "";
    let limit = this.#tenantLimits.get(key);
    if (limit === undefined) {
      limit = pLimit({ concurrency: tenantWebhookConcurrency(this.#concurrency), rejectOnClear: true });
      this.#tenantLimits.set(key, limit);
    }
    return limit;
  }

  async close(): Promise<void> {
    this.#running = false;
    this.#stop.abort();
    for (const limit of this.#tenantLimits.values()) limit.clearQueue();
    this.#limit.clearQueue();
    await this.#loop;
    await this.#agent.destroy().catch(() => undefined);
  }
}

/** An error as logs may show it: its code and message, with the callback URL's secrets removed. */
function safeError(error: unknown, url: string): WebhookError {
  const e = error instanceof Error ? error : new Error(String(error));
  let message = e.message;
  // undici wraps the socket's error: the cause says what happened (ECONNREFUSED, a refused address).
  if (e.cause instanceof Error && !message.includes(e.cause.message)) message += `: ${e.cause.message}`;
  const safe = new WebhookError(scrubUrl(message, url));
  // No stack: it would point here, and the original's may quote the URL.
  safe.stack = `${safe.name}: ${safe.message}`;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string") Object.assign(safe, { code });
  return safe;
}
