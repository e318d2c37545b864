import type { StreamedEvent } from "@virtfleet/core";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { privateRedis } from "../../../../test/fixtures/private-redis.js";
import { FleetClient } from "../producer/fleet-client.js";
import { Keys } from "../redis/keys.js";
import { EventLog } from "./event-log.js";
import { JobEventHub } from "./job-event-hub.js";

// A private Redis: its client list holds only this file's connections.
const local = privateRedis();

/** Connections blocked in a read now. */
async function blockedReads(): Promise<number> {
  const list = (await local.redis.client("LIST")) as string;
  return list.split("\n").filter((line) => / flags=\S*b/.test(line) && / cmd=xread/.test(line)).length;
}

async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("JobEventHub: a FleetClient's followed jobs share one blocking read", () => {
  it("50 jobs followed at once are read on ONE blocking connection, each follower getting its own job's events in order to the end", async () => {
    const prefix = `hub-${Date.now()}`;
    const log = new EventLog(local.redis, new Keys(prefix));
    const client = new FleetClient({ redisUrl: local.url, prefix });
    const ids = Array.from({ length: 50 }, (_, i) => `job-${i}`);
    for (const id of ids) await log.createJob({ jobId: id, kind: "create", vm: `vm-${id}` });
    const seen = new Map<string, string[]>(ids.map((id) => [id, []]));
    const ends = ids.map((id) =>
      client.job(id).wait({ onEvent: (e: StreamedEvent) => seen.get(id)?.push(`${e.phase}:${e.message}`) }),
    );
    await Promise.all(
      ids.map((id) => log.append({ jobId: id, kind: "create", vm: `vm-${id}`, phase: "placed", message: id })),
    );
    await until(() => ids.every((id) => (seen.get(id)?.length ?? 0) === 1));
    // Every follower now waits for its next event.
    await until(async () => (await blockedReads()) >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(await blockedReads()).toBe(1);
    for (const phase of ["domain.defining", "done"] as const)
      await Promise.all(ids.map((id) => log.append({ jobId: id, kind: "create", vm: `vm-${id}`, phase, message: id })));
    const last = await Promise.all(ends);
    expect(last.map((e) => e.phase)).toEqual(ids.map(() => "done"));
    for (const id of ids) expect(seen.get(id)).toEqual([`placed:${id}`, `domain.defining:${id}`, `done:${id}`]);
    await client.close();
    expect(await blockedReads()).toBe(0);
  });

  it("a job followed while the shared read blocks on others gets its events, and one that is not there is JOB_NOT_FOUND", async () => {
    const prefix = `hub2-${Date.now()}`;
    const log = new EventLog(local.redis, new Keys(prefix));
    const client = new FleetClient({ redisUrl: local.url, prefix });
    await log.createJob({ jobId: "waiting", kind: "create", vm: "vm-a" });
    await log.createJob({ jobId: "late", kind: "create", vm: "vm-b" });
    await log.append({ jobId: "late", kind: "create", vm: "vm-b", phase: "done", message: "ended before" });
    const first = client.job("waiting").wait();
    await until(async () => (await blockedReads()) === 1);
    const late = await client.job("late").wait();
    expect([late.phase, late.message]).toEqual(["done", "ended before"]);
    await expect(client.job("nothing").wait()).rejects.toMatchObject({ code: "JOB_NOT_FOUND" });
    await log.append({ jobId: "waiting", kind: "create", vm: "vm-a", phase: "failed", message: "no" });
    expect((await first).phase).toBe("failed");
    await client.close();
  });

  it("a job followed while the hub's FIRST read blocks wakes that read (the hub knows its connection's id before reading)", async () => {
    const keys = new Keys(`hub3-${Date.now()}`);
    const log = new EventLog(local.redis, keys);
    // Far longer than the test may wait: only waking the read gets the second job its events in time.
    const hub = new JobEventHub(() => new Redis(local.url), local.redis, keys, { blockMs: 120_000 });
    try {
      for (const id of ["first", "second"]) await log.createJob({ jobId: id, kind: "create", vm: `vm-${id}` });
      const first = hub.follow("first", "0");
      await until(async () => (await blockedReads()) === 1);
      const second = hub.follow("second", "0");
      await log.append({ jobId: "second", kind: "create", vm: "vm-second", phase: "placed", message: "" });
      const got = await hub.next(second, 10_000);
      expect(got.map((e) => [e.jobId, e.phase])).toEqual([["second", "placed"]]);
      await log.append({ jobId: "first", kind: "create", vm: "vm-first", phase: "placed", message: "" });
      expect((await hub.next(first, 10_000)).map((e) => e.jobId)).toEqual(["first"]);
    } finally {
      await hub.close();
    }
    expect(await blockedReads()).toBe(0);
  });

  it("followers of one stream at different places each get exactly the events after their own place, in order", async () => {
    const keys = new Keys(`hub4-${Date.now()}`);
    const log = new EventLog(local.redis, keys);
    const hub = new JobEventHub(() => new Redis(local.url), local.redis, keys);
    try {
      await log.createJob({ jobId: "j", kind: "create", vm: "vm-j" });
      const ids: string[] = [];
      for (const message of ["1", "2", "3"])
        ids.push((await log.append({ jobId: "j", kind: "create", vm: "vm-j", phase: "placed", message })) ?? "");
      const fromStart = hub.follow("j", "0");
      const fromSecond = hub.follow("j", ids[1] ?? "");
      const take = async (f: typeof fromStart, n: number) => {
        const out: string[] = [];
        while (out.length < n) out.push(...(await hub.next(f, 10_000)).map((e) => e.message));
        return out;
      };
      expect(await take(fromStart, 3)).toEqual(["1", "2", "3"]);
      expect(await take(fromSecond, 1)).toEqual(["3"]);
      await log.append({ jobId: "j", kind: "create", vm: "vm-j", phase: "done", message: "4" });
      expect(await take(fromStart, 1)).toEqual(["4"]);
      expect(await take(fromSecond, 1)).toEqual(["4"]);
    } finally {
      await hub.close();
    }
  });

  it("the all-events stream followed `packed`: every event of an entry, numbered <entry>/<n>; each follower from its own entry", async () => {
    const keys = new Keys(`hub5-${Date.now()}`);
    const log = new EventLog(local.redis, keys);
    const hub = new JobEventHub(() => new Redis(local.url), local.redis);
    try {
      for (const id of ["a", "b"]) await log.createJob({ jobId: id, kind: "create", vm: `vm-${id}` });
      // Appended in one turn of the event loop: one all-events entry holding both.
      await Promise.all(
        ["a", "b"].map((id) => log.append({ jobId: id, kind: "create", vm: `vm-${id}`, phase: "queued", message: id })),
      );
      const [first] = (await local.redis.xrange(keys.allEvents(), "-", "+")) as [string, string[]][];
      const entry = first?.[0] ?? "";
      const fromStart = hub.followStream(keys.allEvents(), "0", "packed");
      const fromFirst = hub.followStream(keys.allEvents(), entry, "packed");
      const take = async (f: typeof fromStart, n: number) => {
        const out: string[] = [];
        while (out.length < n) out.push(...(await hub.next(f, 10_000)).map((e) => `${e.id} ${e.message}`));
        return out;
      };
      expect(await take(fromStart, 2)).toEqual([`${entry}/0 a`, `${entry}/1 b`]);
      await log.append({ jobId: "a", kind: "create", vm: "vm-a", phase: "done", message: "a2" });
      const [, second] = (await local.redis.xrange(keys.allEvents(), "-", "+")) as [string, string[]][];
      expect(await take(fromFirst, 1)).toEqual([`${second?.[0]}/0 a2`]);
      expect(await take(fromStart, 1)).toEqual([`${second?.[0]}/0 a2`]);
    } finally {
      await hub.close();
    }
  });

  it("each wait of a follower ends after its waitMs with nothing, or at once with what arrives; unfollowed, its wait returns", async () => {
    const keys = new Keys(`hub6-${Date.now()}`);
    const log = new EventLog(local.redis, keys);
    const hub = new JobEventHub(() => new Redis(local.url), local.redis, keys);
    try {
      await log.createJob({ jobId: "w", kind: "create", vm: "vm-w" });
      const f = hub.follow("w", "0");
      // The record's own queued event is not in the stream: nothing to hand yet.
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        expect(await hub.next(f, 60)).toEqual([]);
        expect(Date.now() - started).toBeGreaterThanOrEqual(55);
      }
      // A longer wait than the first: its own length, not the first one's.
      const waited = hub.next(f, 10_000);
      await log.append({ jobId: "w", kind: "create", vm: "vm-w", phase: "placed", message: "m" });
      expect((await waited).map((e) => e.message)).toEqual(["m"]);
      const pending = hub.next(f, 10_000);
      hub.unfollow(f);
      expect(await pending).toEqual([]);
    } finally {
      await hub.close();
    }
  });
});
