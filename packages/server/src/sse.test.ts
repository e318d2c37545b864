import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { lastEventIdOf, SSE_KEEP_ALIVE, sseEvent, startSse } from "./sse.js";

describe("Server-Sent Events on the wire", () => {
  it("startSse sends the stream's head and first comment; sseEvent and SSE_KEEP_ALIVE are what the stream carries", async () => {
    const app = Fastify();
    app.get("/s", async (_request, reply) => {
      const res = startSse(reply, "virtfleet test");
      res.write(sseEvent("1-0", "progress", { phase: "queued", n: 1 }));
      res.write(SSE_KEEP_ALIVE);
      res.end();
    });
    try {
      const res = await app.inject({ method: "GET", url: "/s" });
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
      expect(res.headers["cache-control"]).toBe("no-cache, no-transform");
      expect(res.headers["x-accel-buffering"]).toBe("no");
      expect(res.body).toBe(
        ': virtfleet test\n\nid: 1-0\nevent: progress\ndata: {"phase":"queued","n":1}\n\n: keep-alive\n\n',
      );
    } finally {
      await app.close();
    }
  });

  it("lastEventIdOf: the Last-Event-ID header, else ?lastEventId=, none when empty", async () => {
    const app = Fastify();
    app.get("/id", async (request) => ({ id: lastEventIdOf(request) ?? null }));
    try {
      const id = async (url: string, headers: Record<string, string> = {}) =>
        (await app.inject({ method: "GET", url, headers })).json<{ id: string | null }>().id;
      expect(await id("/id", { "last-event-id": "5-1" })).toBe("5-1");
      expect(await id("/id?lastEventId=6-0", { "last-event-id": "5-1" })).toBe("5-1");
      expect(await id("/id?lastEventId=6-0")).toBe("6-0");
      expect(await id("/id?lastEventId=")).toBeNull();
      expect(await id("/id")).toBeNull();
    } finally {
      await app.close();
    }
  });
});
