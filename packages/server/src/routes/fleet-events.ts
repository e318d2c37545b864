import { ProgressEvent, type StreamedEvent } from "@virtfleet/core";
import { JobEventHub, type JobFollower, type Keys, type StreamEntries, unpackAllEvents } from "@virtfleet/fleet";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Redis } from "ioredis";
import { canSee } from "../auth.js";
import { DEFAULT_MAX_STREAMS_PER_TOKEN, STREAM_BLOCK_MS, STREAM_KEEP_ALIVE_MS } from "../event-streams.js";
import type { RouteDoc } from "../openapi.js";
import { problem } from "../problem.js";
import { lastEventIdOf, SSE_KEEP_ALIVE, sseEvent, startSse } from "../sse.js";
import type { RouteContext } from "./route-context.js";

/** Job → tenant lookups a fleet stream remembers (most jobs send several events). */
const TENANT_CACHE_SIZE = 10_000;

export const FLEET_EVENT_ROUTES: readonly RouteDoc[] = [
  {
    method: "get",
    path: "/v1/events",
    summary:
      "Every job event the token may see (its tenant's; an admin's: all), from now on, as Server-Sent Events (resume with Last-Event-ID)",
    scope: "vms:read",
    status: 200,
    response: ProgressEvent,
    sse: true,
  },
];

export interface FleetEventsDeps {
  keys: Keys;
  /** Shared, never blocked: where a stream starts, the rest of a resumed entry, waking the shared read. */
  redis: Redis;
  /** The one connection every stream's events are read on (opened when first needed, closed with the server). */
  connect(): Redis;
  /** The tenant of a job (undefined: none, or its record expired). */
  tenantOf(jobId: string): Promise<string | undefined>;
  /** Aborted when the server closes: ends every stream. */
  closing: AbortSignal;
  /** Fleet streams one token may hold open at once (more: 429). Default DEFAULT_MAX_STREAMS_PER_TOKEN. */
  maxPerToken?: number;
  /** A comment is sent after this long without events. Default STREAM_KEEP_ALIVE_MS. */
  keepAliveMs?: number;
  /** How long the shared blocking read waits at most (a stream that joins wakes it). Default STREAM_BLOCK_MS. */
  blockMs?: number;
}

/** `<all-events entry id>/<place in the entry>`, as the stream's events are numbered. */
const EVENT_ID = /^(\d+-\d+)\/(\d+)$/;

/**
 * `GET /v1/events`: the fleet-wide stream (the all-events stream every job event is written to, the
 * one `virtfleet watch` reads), filtered to the token's tenant. Each event is sent as on
 * `/v1/jobs/{id}/events` (`event: progress`, `data`: the ProgressEvent) with the id
 * `<entry>/<n>`; `Last-Event-ID` resumes after that event while the stream still holds it. Every
 * client follows the stream in one JobEventHub: one blocking read on one connection for them all.
 */
export function registerFleetEventRoutes(app: FastifyInstance, ctx: RouteContext, deps: FleetEventsDeps): void {
  const open = new Map<string, number>();
  const maxPerToken = deps.maxPerToken ?? DEFAULT_MAX_STREAMS_PER_TOKEN;
  const keepAliveMs = deps.keepAliveMs ?? STREAM_KEEP_ALIVE_MS;
  const hub = new JobEventHub(deps.connect, deps.redis, undefined, { blockMs: deps.blockMs ?? STREAM_BLOCK_MS });
  deps.closing.addEventListener("abort", () => void hub.close(), { once: true });

  app.get("/v1/events", async (request, reply) => {
    const p = ctx.principal(request, "vms:read");
    const resume = lastEventId(request);
    if ((open.get(p.tokenId) ?? 0) >= maxPerToken)
      throw problem("RATE_LIMITED", `this token already holds ${maxPerToken} fleet event streams`);
    open.set(p.tokenId, (open.get(p.tokenId) ?? 0) + 1);

    const tenants = new Map<string, string | undefined>();
    const visible = async (e: StreamedEvent): Promise<boolean> => {
      if (p.scopes.has("admin")) return true;
      let tenant = tenants.get(e.jobId);
      if (!tenants.has(e.jobId)) {
        tenant = await deps.tenantOf(e.jobId);
        if (tenants.size >= TENANT_CACHE_SIZE) tenants.delete(tenants.keys().next().value as string);
        tenants.set(e.jobId, tenant);
      }
      return canSee(p, tenant);
    };

    const res = reply.raw;
    let follower: JobFollower | undefined;
    let closed = false;
    const stop = () => {
      if (closed) return;
      closed = true;
      if (follower !== undefined) hub.unfollow(follower);
      const n = (open.get(p.tokenId) ?? 1) - 1;
      if (n <= 0) open.delete(p.tokenId);
      else open.set(p.tokenId, n);
      res.end();
    };
    // Where the stream starts, fixed before the answer's head is sent: once a client has the head,
    // nothing written after that is missed.
    let last: string;
    try {
      last =
        resume?.entry ??
        ((await deps.redis.xrevrange(deps.keys.allEvents(), "+", "-", "COUNT", 1)) as StreamEntries)[0]?.[0] ??
        "0";
    } catch (error) {
      stop();
      throw error;
    }
    deps.closing.addEventListener("abort", stop, { once: true });
    res.on("close", () => {
      deps.closing.removeEventListener("abort", stop);
      stop();
    });
    startSse(reply, "virtfleet events");
    // Opened while the server closes: ends at once.
    if (deps.closing.aborted) stop();

    const send = async (events: readonly StreamedEvent[]) => {
      let out = "";
      for (const { id, ...event } of events)
        if (await visible({ id, ...event })) out += sseEvent(id, "progress", event);
      if (out !== "" && !closed) res.write(out);
    };

    try {
      const f = hub.followStream(deps.keys.allEvents(), last, "packed");
      follower = f;
      if (closed) hub.unfollow(f);
      if (resume !== undefined) {
        // The rest of the entry the client saw part of, then the entries after it.
        const entry = (await deps.redis.xrange(deps.keys.allEvents(), resume.entry, resume.entry)) as StreamEntries;
        await send(unpackAllEvents(entry).flatMap((e) => e.events.slice(resume.index + 1)));
      }
      while (!closed) {
        const events = await hub.next(f, keepAliveMs);
        if (closed) break;
        if (events.length === 0) res.write(SSE_KEEP_ALIVE);
        else await send(events);
      }
    } catch (error) {
      // The server closing under a pending read ends the stream quietly; the client resumes with Last-Event-ID.
      if (!closed) request.log.warn({ err: error }, "fleet event stream failed");
    } finally {
      stop();
    }
  });
}

function lastEventId(request: FastifyRequest): { entry: string; index: number } | undefined {
  const id = lastEventIdOf(request);
  if (id === undefined) return undefined;
  const m = EVENT_ID.exec(id);
  if (m === null)
    throw problem("INVALID_SPEC", "Last-Event-ID is not an event id of this stream (`<entry>/<n>`)", "Last-Event-ID");
  return { entry: m[1] as string, index: Number(m[2]) };
}
