import { randomUUID } from "node:crypto";
import { EventLog, Keys } from "@virtfleet/fleet";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import { connectedClients, openSse, type SseClient } from "../../../test/fixtures/api-streams.js";
import { privateRedis } from "../../../test/fixtures/private-redis.js";
import { TokenStore } from "./auth.js";
import { ApiServer } from "./server.js";

const TOKENS = {
  acme: "fe-acme-token-0123456789abcdef",
  admin: "fe-admin-token-0123456789abcdef",
};

// A private Redis: its client list holds only this file's connections.
const local = privateRedis();

function newServer(prefix: string, maxStreamsPerToken: number): ApiServer {
  return new ApiServer({
    redisUrl: local.url,
    prefix,
    tokens: new TokenStore([
      { id: "acme", token: TOKENS.acme, scopes: ["vms:read"], tenant: "acme" },
      { id: "admin", token: TOKENS.admin, scopes: ["admin"], tenant: "ops" },
    ]),
    logger: pino({ level: "silent" }),
    port: 0,
    maxStreamsPerToken,
  });
}

async function append(log: EventLog, jobId: string, phase: "queued" | "placed" | "done"): Promise<void> {
  await log.append({ jobId, kind: "create", vm: `vm-${jobId}`, phase, message: `${jobId} ${phase}` });
}

describe("GET /v1/events: every client follows the all-events stream on one shared connection", () => {
  it("20 clients (two tokens, two tenants) hold no more Redis connections than one; each gets what it may see, in order", async () => {
    const prefix = `fe-${randomUUID()}`;
    const log = new EventLog(local.redis, new Keys(prefix));
    const server = newServer(prefix, 20);
    await server.start();
    const streams: SseClient[] = [];
    // Twenty open streams are a normal day, not a leak: Node must not warn of one.
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    try {
      await log.createJob({ jobId: "fe-a", kind: "create", vm: "vm-fe-a", tenant: "acme" });
      await log.createJob({ jobId: "fe-o", kind: "create", vm: "vm-fe-o", tenant: "other" });
      const first = await openSse(`${server.url}/v1/events`, TOKENS.acme);
      streams.push(first);
      expect(first.status).toBe(200);
      await append(log, "fe-a", "queued");
      await first.waitEvents(1);
      const withOne = await connectedClients(local.redis);

      for (let i = 0; i < 19; i++) {
        const s = await openSse(`${server.url}/v1/events`, i % 2 === 0 ? TOKENS.admin : TOKENS.acme);
        expect(s.status).toBe(200);
        streams.push(s);
      }
      await append(log, "fe-o", "queued");
      await append(log, "fe-a", "placed");
      await append(log, "fe-a", "done");
      const admins = streams.slice(1).filter((_, i) => i % 2 === 0);
      const acmes = streams.slice(1).filter((_, i) => i % 2 === 1);
      await Promise.all([...admins.map((s) => s.waitEvents(3)), ...acmes.map((s) => s.waitEvents(2))]);
      await first.waitEvents(3);
      expect(await connectedClients(local.redis)).toBe(withOne);

      expect(first.events.map((e) => e.phase)).toEqual(["queued", "placed", "done"]);
      for (const s of admins) expect(s.events.map((e) => e.phase)).toEqual(["queued", "placed", "done"]);
      for (const s of acmes) expect(s.events.map((e) => e.phase)).toEqual(["placed", "done"]);
      // Every client numbers an event the same way (entry/place), so any can resume with it.
      expect(new Set(streams.map((s) => s.events.at(-1)?.id)).size).toBe(1);
      expect(warnings.filter((w) => w.startsWith("MaxListenersExceededWarning"))).toEqual([]);
    } finally {
      process.off("warning", onWarning);
      for (const s of streams) s.destroy();
      await server.close();
    }
  });

  it("a token holds at most maxStreamsPerToken (429 RATE_LIMITED), a place is free again once its client leaves; close() ends every stream", async () => {
    const prefix = `fe-${randomUUID()}`;
    const server = newServer(prefix, 3);
    await server.start();
    const streams: SseClient[] = [];
    try {
      for (let i = 0; i < 3; i++) streams.push(await openSse(`${server.url}/v1/events`, TOKENS.acme));
      expect(streams.map((s) => s.status)).toEqual([200, 200, 200]);
      const over = await openSse(`${server.url}/v1/events`, TOKENS.acme);
      expect(over.status).toBe(429);
      await over.ended;
      expect(JSON.parse(over.body)).toMatchObject({ code: "RATE_LIMITED" });
      const admin = await openSse(`${server.url}/v1/events`, TOKENS.admin);
      streams.push(admin);
      expect(admin.status).toBe(200);
      streams[0]?.destroy();
      await vi.waitFor(
        async () => {
          const again = await openSse(`${server.url}/v1/events`, TOKENS.acme);
          if (again.status === 200) streams.push(again);
          else again.destroy();
          expect(again.status).toBe(200);
        },
        { timeout: 5000, interval: 50 },
      );
      await server.close();
      await Promise.all(streams.slice(1).map((s) => s.ended));
    } finally {
      for (const s of streams) s.destroy();
      await server.close();
    }
  });
});
