import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { Keys } from "../redis/keys.js";
import { EventLog } from "./event-log.js";

describe("EventLog against real Redis", () => {
  test("events appended together reach the all-events stream as one entry holding each, in order; each job's stream has its own", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const log = new EventLog(redis, keys);
    const jobs = ["j1", "j2", "j3"];
    for (const jobId of jobs) await log.createJob({ jobId, kind: "create", vm: `vm-${jobId}` });
    const phases = ["queued", "placed"] as const;
    // Made in one turn of the event loop: one script run, one all-events entry.
    await Promise.all(
      jobs.flatMap((jobId) =>
        phases.map((phase) => log.append({ jobId, kind: "create", vm: `vm-${jobId}`, phase, message: phase })),
      ),
    );
    // A later append: an entry of its own.
    await log.append({ jobId: "j2", kind: "create", vm: "vm-j2", phase: "done", message: "done" });
    const entries = await redis.xrange(keys.allEvents(), "-", "+");
    const decoded = entries.map(([, fields]) =>
      fields.filter((_, i) => i % 2 === 1).map((raw) => JSON.parse(raw) as { jobId: string; phase: string }),
    );
    expect(entries.map(([, fields]) => fields.filter((_, i) => i % 2 === 0).every((f) => f === "e"))).toEqual([
      true,
      true,
    ]);
    expect(decoded.map((events) => events.map((e) => `${e.jobId}:${e.phase}`))).toEqual([
      jobs.flatMap((j) => phases.map((p) => `${j}:${p}`)),
      ["j2:done"],
    ]);
    for (const jobId of jobs) {
      const own = await log.read(jobId);
      expect(own.map((e) => e.phase)).toEqual(jobId === "j2" ? ["queued", "placed", "done"] : ["queued", "placed"]);
    }
    // An append refused (the job already ended) adds nothing anywhere.
    expect(await log.append({ jobId: "j2", kind: "create", vm: "vm-j2", phase: "failed", message: "late" })).toBe(
      undefined,
    );
    expect(await redis.xlen(keys.allEvents())).toBe(2);
    expect((await log.read("j2")).map((e) => e.phase)).toEqual(["queued", "placed", "done"]);
  });

  test("a hundred appends made in one turn go as four script runs of 25 (one all-events entry each), in the order made", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const log = new EventLog(redis, keys);
    const jobs = Array.from({ length: 100 }, (_, i) => `b${i}`);
    for (const jobId of jobs) await log.createJob({ jobId, kind: "create", vm: `vm-${jobId}` });
    const ids = await Promise.all(
      jobs.map((jobId) => log.append({ jobId, kind: "create", vm: `vm-${jobId}`, phase: "placed", message: "p" })),
    );
    expect(ids.every((id) => typeof id === "string")).toBe(true);
    const entries = await redis.xrange(keys.allEvents(), "-", "+");
    expect(entries.map(([, fields]) => fields.length / 2)).toEqual([25, 25, 25, 25]);
    const order = entries.flatMap(([, fields]) =>
      fields.filter((_, i) => i % 2 === 1).map((raw) => (JSON.parse(raw) as { jobId: string }).jobId),
    );
    expect(order).toEqual(jobs);
  });

  test("readAll gives every event of the entries after the one named, in order, each with <entry>/<place> as id", async ({
    redis,
    prefix,
  }) => {
    const log = new EventLog(redis, new Keys(prefix));
    for (const jobId of ["a", "b"]) await log.createJob({ jobId, kind: "create", vm: `vm-${jobId}` });
    const before = await log.readAll("0", undefined);
    expect(before).toEqual({ events: [], lastEntry: "0" });
    await Promise.all([
      log.append({ jobId: "a", kind: "create", vm: "vm-a", phase: "queued", message: "q" }),
      log.append({ jobId: "b", kind: "create", vm: "vm-b", phase: "queued", message: "q" }),
    ]);
    const first = await log.readAll("0", undefined);
    expect(first.events.map((e) => `${e.jobId}:${e.phase}`)).toEqual(["a:queued", "b:queued"]);
    expect(first.events.map((e) => e.id)).toEqual([`${first.lastEntry}/0`, `${first.lastEntry}/1`]);
    await log.append({ jobId: "a", kind: "create", vm: "vm-a", phase: "done", message: "d" });
    const next = await log.readAll(first.lastEntry, 1000);
    expect(next.events.map((e) => `${e.jobId}:${e.phase}`)).toEqual(["a:done"]);
    expect((await log.readAll(next.lastEntry, undefined)).events).toEqual([]);
  });
});
