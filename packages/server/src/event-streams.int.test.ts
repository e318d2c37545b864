import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectedClients, openSse, type SseClient, tinySpec } from "../../../test/fixtures/api-streams.js";
import { hostUp } from "../../../test/fixtures/host-status.js";
import { LocalRedis } from "../../../test/fixtures/redis-server.js";
import { TokenStore } from "./auth.js";
import { DEFAULT_MAX_STREAMS_PER_TOKEN } from "./event-streams.js";
import { ApiServer } from "./server.js";

const TOKENS = { reader: "reader-token-0123456789abcdef", other: "other-token-0123456789abcdef" };
/** Redis refuses a 65th client: 300 streams with a connection each would fill it. */
const MAX_CLIENTS = 64;

let local: LocalRedis;
let redis: Redis;
let server: ApiServer;
const prefix = `test-${randomUUID()}`;

function newServer(options: { maxStreamsPerToken?: number } = {}): ApiServer {
  return new ApiServer({
    redisUrl: local.url,
    prefix,
    tokens: new TokenStore([
      { id: "reader", token: TOKENS.reader, scopes: ["vms:read"], tenant: "acme" },
      { id: "other", token: TOKENS.other, scopes: ["vms:read"], tenant: "acme" },
    ]),
    logger: pino({ level: "silent" }),
    port: 0,
    ...options,
  });
}

/** A create job of tenant acme, placed (queued and placed events), still running. */
async function runningJob(): Promise<string> {
  const job = await server.fleet.createVm(tinySpec(`as-${randomUUID().slice(0, 8)}`), { tenant: "acme" });
  return job.id;
}

async function finish(jobId: string): Promise<void> {
  const record = await server.fleet.log.getJob(jobId);
  await server.fleet.log.append({ jobId, kind: "create", vm: record?.vm ?? "", phase: "done", message: "done" });
}

beforeAll(async () => {
  local = await LocalRedis.start({ appendonly: false, maxclients: MAX_CLIENTS });
  redis = new Redis(local.url, { maxRetriesPerRequest: 1 });
  server = newServer({ maxStreamsPerToken: 300 });
  await server.start();
  await hostUp(server.fleet, "as-h1", {
    memoryMiB: { total: 1_000_000, capacity: 1_000_000 },
    vcpus: { total: 1000, capacity: 1000 },
  });
});

afterAll(async () => {
  await server?.close();
  redis?.disconnect();
  await local?.stop();
});

describe("event streams", () => {
  it("300 streams from one token share a few Redis connections; Redis still takes a new client; over the cap is 429", async () => {
    const jobId = await runningJob();
    const url = `${server.url}/v1/jobs/${jobId}/events`;
    const streams: SseClient[] = [];
    for (let i = 0; i < 300; i++) streams.push(await openSse(url, TOKENS.reader));
    expect(streams.every((s) => s.status === 200)).toBe(true);
    // Every stream is open and served: each got the job's first two events.
    await Promise.all(streams.map((s) => s.waitEvents(2)));
    expect(await connectedClients(redis)).toBeLessThanOrEqual(12);
    // A worker (re)starting now can still connect.
    const fresh = new Redis(local.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    fresh.on("error", () => undefined);
    try {
      expect(await fresh.ping()).toBe("PONG");
    } finally {
      fresh.disconnect();
    }
    // The token's 301st stream is refused; another token's is not.
    const over = await fetch(url, { headers: { authorization: `Bearer ${TOKENS.reader}` } });
    expect(over.status).toBe(429);
    expect(over.headers.get("content-type")).toMatch(/application\/problem\+json/);
    expect(await over.json()).toMatchObject({ status: 429, code: "RATE_LIMITED" });
    const another = await openSse(url, TOKENS.other);
    expect(another.status).toBe(200);
    // The job's end ends every stream, after its terminal event.
    await finish(jobId);
    await Promise.all([...streams, another].map((s) => s.ended));
    for (const s of streams) expect(s.events.map((e) => e.phase)).toEqual(["queued", "placed", "done"]);
    // Their places are free again.
    const again = await openSse(url, TOKENS.reader);
    expect(again.status).toBe(200);
    await again.ended;
  });

  it("a stream opened with Last-Event-ID at the terminal event (job or batch) ends at once", async () => {
    const jobId = await runningJob();
    await finish(jobId);
    const all = await openSse(`${server.url}/v1/jobs/${jobId}/events`, TOKENS.reader);
    await all.ended;
    const terminal = all.events.at(-1);
    expect(terminal?.phase).toBe("done");
    const resumed = await openSse(`${server.url}/v1/jobs/${jobId}/events`, TOKENS.reader, terminal?.id);
    await resumed.ended;
    expect(resumed.events).toEqual([]);

    const batch = await server.fleet.createBatch(
      [tinySpec(`as-${randomUUID().slice(0, 8)}`), tinySpec(`as-${randomUUID().slice(0, 8)}`)],
      { tenant: "acme" },
    );
    for (const item of batch.items) if (item.jobId !== undefined) await finish(item.jobId);
    const batchUrl = `${server.url}/v1/batches/${batch.batchId}/events`;
    const whole = await openSse(batchUrl, TOKENS.reader);
    await whole.ended;
    expect(whole.events.filter((e) => e.phase === "done")).toHaveLength(2);
    const resumedBatch = await openSse(batchUrl, TOKENS.reader, whole.events.at(-1)?.id);
    await resumedBatch.ended;
    expect(resumedBatch.events).toEqual([]);
  });

  it("a token holds at most DEFAULT_MAX_STREAMS_PER_TOKEN by default; close() ends every open stream", async () => {
    const own = newServer();
    await own.start();
    try {
      const jobId = await runningJob();
      const url = `${own.url}/v1/jobs/${jobId}/events`;
      const streams: SseClient[] = [];
      for (let i = 0; i < DEFAULT_MAX_STREAMS_PER_TOKEN; i++) streams.push(await openSse(url, TOKENS.reader));
      await Promise.all(streams.map((s) => s.waitEvents(2)));
      const over = await openSse(url, TOKENS.reader);
      expect(over.status).toBe(429);
      await over.ended;
      expect(JSON.parse(over.body)).toMatchObject({ code: "RATE_LIMITED" });
      // The job is still running: only the shutdown ends these streams.
      await own.close();
      await Promise.all(streams.map((s) => s.ended));
      expect(streams.every((s) => s.hasEnded())).toBe(true);
    } finally {
      await own.close();
    }
  });
});
