import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { Keys } from "../../redis/keys.js";
import { BatchedScript } from "../../redis/scripts.js";
import { EventLog } from "../event-log.js";

const FILE = new URL("./append-event-6.lua", import.meta.url);

/** The command's KEYS and ARGV for one event (see the file's header). */
function call(
  keys: Keys,
  jobId: string,
  event: { phase: string; message?: string; host?: string; error?: unknown },
  opts: { batch?: string; cancel?: boolean; vm?: { key: string; state: string; addresses?: string[] } } = {},
): [string[], string[]] {
  const job = keys.job(jobId);
  const batch = opts.batch ?? "";
  const fields = {
    jobId,
    kind: "create",
    vm: "v",
    percent: 10,
    message: event.message ?? event.phase,
    at: "2026-01-01T00:00:00.000Z",
    ...event,
  };
  return [
    [
      job,
      keys.jobEvents(jobId),
      keys.allEvents(),
      batch === "" ? job : keys.batch(batch),
      batch === "" ? job : keys.batchEvents(batch),
      opts.vm?.key ?? job,
    ],
    [
      JSON.stringify(fields),
      opts.cancel === true ? "1" : "0",
      batch,
      "1000",
      "500",
      "10000",
      opts.vm?.state ?? "",
      jobId,
      opts.vm?.addresses === undefined ? "" : JSON.stringify(opts.vm.addresses),
      fields.phase,
      String(fields.percent),
      fields.message,
      fields.at,
      fields.host ?? "",
      fields.error === undefined ? "" : JSON.stringify(fields.error),
    ],
  ];
}

describe("records/commands/append-event-6.lua", () => {
  test("writes the event to the job's stream and record, sets the TTLs given in ARGV, and returns the entry id", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const script = new BatchedScript(redis, { file: FILE, epilogue: "flush_events()" });
    await redis.hset(keys.job("j1"), "jobId", "j1", "phase", "queued");
    const id = await script.call(...call(keys, "j1", { phase: "queued", message: "accepted" }));
    const entries = await redis.xrange(keys.jobEvents("j1"), "-", "+");
    expect(entries.map(([entryId]) => entryId)).toEqual([id]);
    expect(await redis.ttl(keys.job("j1"))).toBeGreaterThan(400);
    expect(await redis.ttl(keys.jobEvents("j1"))).toBeGreaterThan(400);
    await script.call(...call(keys, "j1", { phase: "disk.creating", host: "h1", error: { code: "X", message: "m" } }));
    const record = await redis.hgetall(keys.job("j1"));
    expect(record).toMatchObject({ phase: "disk.creating", percent: "10", message: "disk.creating", hostId: "h1" });
    expect(JSON.parse(record.error as string)).toEqual({ code: "X", message: "m" });
    // Both runs reached the all-events stream, one entry each.
    expect(await redis.xlen(keys.allEvents())).toBe(2);
  });

  test("a terminal event is the last: later ones are refused (false) and write nothing", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const script = new BatchedScript(redis, { file: FILE, epilogue: "flush_events()" });
    await redis.hset(keys.job("j1"), "jobId", "j1", "phase", "queued");
    expect(typeof (await script.call(...call(keys, "j1", { phase: "done" })))).toBe("string");
    expect(await script.call(...call(keys, "j1", { phase: "failed" }))).toBe(null);
    expect(await redis.xlen(keys.jobEvents("j1"))).toBe(1);
    expect(await redis.xlen(keys.allEvents())).toBe(1);
    expect(await redis.hget(keys.job("j1"), "phase")).toBe("done");
  });

  test("refuses with '!cancel' when asked to and the job was asked to be cancelled; writes nothing", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const script = new BatchedScript(redis, { file: FILE, epilogue: "flush_events()" });
    await redis.hset(keys.job("j1"), "jobId", "j1", "phase", "disk.creating", "cancelRequested", "1");
    await redis.hset(keys.vm("v"), "state", "creating");
    const vm = { key: keys.vm("v"), state: "running" };
    expect(await script.call(...call(keys, "j1", { phase: "guest.ready" }, { cancel: true, vm }))).toBe("!cancel");
    expect(await redis.exists(keys.jobEvents("j1"), keys.allEvents())).toBe(0);
    expect(await redis.hget(keys.vm("v"), "state")).toBe("creating");
    // Without the check, the same event goes through.
    expect(typeof (await script.call(...call(keys, "j1", { phase: "cancelled" }, { cancel: false })))).toBe("string");
  });

  test("sets the VM's state, job, addresses and updatedAt (the event's time) only when the VM is still recorded", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const script = new BatchedScript(redis, { file: FILE, epilogue: "flush_events()" });
    await redis.hset(keys.job("j1"), "jobId", "j1", "phase", "disk.creating");
    await redis.hset(keys.vm("v"), "state", "creating");
    const vm = { key: keys.vm("v"), state: "running", addresses: ["127.0.0.2"] };
    await script.call(...call(keys, "j1", { phase: "done" }, { vm }));
    expect(await redis.hgetall(keys.vm("v"))).toMatchObject({
      state: "running",
      jobId: "j1",
      addresses: '["127.0.0.2"]',
      updatedAt: "2026-01-01T00:00:00.000Z",
    });
    // Without addresses: the state, job and time only (the addresses kept).
    await redis.hset(keys.job("j3"), "jobId", "j3", "phase", "stopping");
    const stopped = call(keys, "j3", { phase: "done" }, { vm: { key: keys.vm("v"), state: "stopped" } });
    (stopped[1] as string[])[12] = "2026-01-02T00:00:00.000Z";
    await script.call(...stopped);
    expect(await redis.hgetall(keys.vm("v"))).toMatchObject({
      state: "stopped",
      jobId: "j3",
      addresses: '["127.0.0.2"]',
      updatedAt: "2026-01-02T00:00:00.000Z",
    });
    await redis.hset(keys.job("j2"), "jobId", "j2", "phase", "disk.creating");
    await script.call(...call(keys, "j2", { phase: "done" }, { vm: { key: keys.vm("gone"), state: "running" } }));
    expect(await redis.exists(keys.vm("gone"))).toBe(0);
  });

  test("batch: refuses '!batch:<id>' when the caller's batch is not the job's; counts the terminal event once to the batch", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const script = new BatchedScript(redis, { file: FILE, epilogue: "flush_events()" });
    await redis.hset(keys.job("j1"), "jobId", "j1", "phase", "queued", "batch", "b1");
    await redis.hset(keys.batch("b1"), "total", "2", "ended", "0");
    expect(await script.call(...call(keys, "j1", { phase: "disk.creating" }))).toBe("!batch:b1");
    expect(await script.call(...call(keys, "j1", { phase: "disk.creating" }, { batch: "b2" }))).toBe("!batch:b1");
    expect(await redis.exists(keys.jobEvents("j1"), keys.batchEvents("b1"), keys.allEvents())).toBe(0);
    await script.call(...call(keys, "j1", { phase: "disk.creating" }, { batch: "b1" }));
    await script.call(...call(keys, "j1", { phase: "done" }, { batch: "b1" }));
    await script.call(...call(keys, "j1", { phase: "failed" }, { batch: "b1" }));
    expect(await redis.xlen(keys.batchEvents("b1"))).toBe(2);
    expect(await redis.hget(keys.batch("b1"), "ended")).toBe("1");
    expect(await redis.ttl(keys.batchEvents("b1"))).toBeGreaterThan(400);
    // A job with no batch, given one: refused, naming none.
    await redis.hset(keys.job("j2"), "jobId", "j2", "phase", "queued");
    expect(await script.call(...call(keys, "j2", { phase: "disk.creating" }, { batch: "b1" }))).toBe("!batch:");
  });

  test("calls in one run: one all-events entry holding each call's event in order", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const script = new BatchedScript(redis, { file: FILE, epilogue: "flush_events()" });
    for (const j of ["a", "b"]) await redis.hset(keys.job(j), "jobId", j, "phase", "queued");
    const replies = await Promise.all([
      script.call(...call(keys, "a", { phase: "disk.creating" })),
      script.call(...call(keys, "b", { phase: "disk.creating" })),
      script.call(...call(keys, "a", { phase: "done" })),
      script.call(...call(keys, "a", { phase: "failed" })),
    ]);
    expect(replies.map((r) => typeof r)).toEqual(["string", "string", "string", "object"]);
    const entries = await redis.xrange(keys.allEvents(), "-", "+");
    expect(entries).toHaveLength(1);
    const fields = entries[0]?.[1] ?? [];
    expect(fields.filter((_, i) => i % 2 === 1).map((raw) => JSON.parse(raw).jobId + JSON.parse(raw).phase)).toEqual([
      "adisk.creating",
      "bdisk.creating",
      "adone",
    ]);
  });

  test("takes exactly 6 keys", async ({ redis }) => {
    const script = new BatchedScript(redis, { file: FILE, epilogue: "flush_events()" });
    expect(() => script.call(["a"], [])).toThrow("append-event takes 6 keys, got 1");
  });

  test("EventLog.append: a caller that does not know the job's batch still writes to it (learned from the script)", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const log = new EventLog(redis, keys);
    await redis.hset(keys.batch("b1"), "total", "1", "ended", "0");
    await log.createJob({ jobId: "j1", kind: "create", vm: "v", batchId: "b1" });
    await log.append({ jobId: "j1", kind: "create", vm: "v", phase: "disk.creating", message: "b" });
    await log.append({ jobId: "j1", kind: "create", vm: "v", phase: "done", message: "d" });
    expect((await log.readBatch("b1", "0", undefined)).map((e) => e.phase)).toEqual(["disk.creating", "done"]);
    expect(await redis.hget(keys.batch("b1"), "ended")).toBe("1");
    expect((await log.read("j1")).map((e) => e.phase)).toEqual(["disk.creating", "done"]);
  });
});
