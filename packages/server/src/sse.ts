import type { ServerResponse } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";

/** The comment a quiet stream gets now and then (keeps proxies from closing it). */
export const SSE_KEEP_ALIVE = ": keep-alive\n\n";

/**
 * Answers `reply` as Server-Sent Events: takes the response over from Fastify, sends the head (no
 * caching, no buffering by proxies) and a first comment `: <comment>`. Answers the raw response the
 * events are written to (`sseEvent`); its caller ends it.
 */
export function startSse(reply: FastifyReply, comment: string): ServerResponse {
  const res = reply.raw;
  reply.hijack();
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  res.write(`: ${comment}\n\n`);
  return res;
}

/** One event as sent on the wire: its id (resume with Last-Event-ID), its type and its data as JSON. */
export function sseEvent(id: string, event: string, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The `Last-Event-ID` header, else the `lastEventId` query parameter (for EventSource reconnects by hand); undefined when empty. */
export function lastEventIdOf(request: FastifyRequest): string | undefined {
  const raw = request.headers["last-event-id"] ?? (request.query as { lastEventId?: string }).lastEventId;
  const id = Array.isArray(raw) ? raw[0] : raw;
  return id === undefined || id === "" ? undefined : id;
}
