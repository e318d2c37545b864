import { randomUUID } from "node:crypto";
import type { StreamedEvent } from "@virtfleet/core";
import { EventLog, Keys } from "@virtfleet/fleet";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalRedis } from "../../../test/fixtures/redis-server.js";
import { EventStreams, type StreamSink } from "./event-streams.js";

let local: LocalRedis;
let redis: Redis;

beforeAll(async () => {
  local = await LocalRedis.start({ appendonly: false });
  redis = new Redis(local.url);
});

afterAll(async () => {
  redis?.disconnect();
  await local?.stop();
});

async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Connections blocked in a read now. */
async function blockedReads(): Promise<number> {
  const list = (await redis.client("LIST")) as string;
  return list.split("\n").filter((line) => / flags=\S*b/.test(line) && / cmd=xread/.test(line)).length;
}

function sink(): StreamSink & { got: StreamedEvent[]; ended: boolean } {
  const s = {
    got: [] as StreamedEvent[],
    ended: false,
    events: (events: readonly StreamedEvent[]) => {
      s.got.push(...events);
    },
    keepAlive: () => undefined,
    end: () => {
      s.ended = true;
    },
  };
  return s;
}

describe("event streams share the fleet's JobEventHub", () => {
  it("a stream that joins while the shared read blocks on another stream gets its new events at once, not when that read ends", async () => {
    const keys = new Keys(`esj-${randomUUID().slice(0, 8)}`);
    const log = new EventLog(redis, keys);
    const streams = new EventStreams({
      connect: () => new Redis(local.url),
      redis,
      logger: pino({ level: "silent" }),
      connections: 1,
      // Far longer than the test may wait: only waking the read gets the joiner its events in time.
      blockMs: 120_000,
    });
    try {
      for (const jobId of ["esj-a", "esj-b"]) {
        await log.createJob({ jobId, kind: "create", vm: jobId });
        await log.append({ jobId, kind: "create", vm: jobId, phase: "placed", message: "" });
      }
      const source = (jobId: string) => ({ key: keys.jobEvents(jobId), ended: async () => false });
      const a = sink();
      streams.open("t", source("esj-a"), "0", a);
      await until(() => a.got.length === 1);
      await until(async () => (await blockedReads()) === 1);
      const b = sink();
      streams.open("t", source("esj-b"), "0", b);
      await until(() => b.got.length === 1);
      await log.append({ jobId: "esj-b", kind: "create", vm: "esj-b", phase: "domain.defining", message: "" });
      await until(() => b.got.length === 2);
      expect(b.got.map((e) => e.phase)).toEqual(["placed", "domain.defining"]);
      // The first stream is still served too, in order.
      await log.append({ jobId: "esj-a", kind: "create", vm: "esj-a", phase: "domain.defining", message: "" });
      await until(() => a.got.length === 2);
      expect(a.got.map((e) => e.phase)).toEqual(["placed", "domain.defining"]);
      expect(a.ended || b.ended).toBe(false);
    } finally {
      await streams.close();
    }
  });
});
