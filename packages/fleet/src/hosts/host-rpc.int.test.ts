import { VirtfleetError } from "@virtfleet/core";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { privateRedis } from "../../../../test/fixtures/private-redis.js";
import { Keys } from "../redis/keys.js";
import { ConsoleClient, replyConsole } from "./console.js";
import { PowerClient, replyPower } from "./power.js";

// A private Redis: its client list holds only this file's connections.
const local = privateRedis();

/**
 * A stand-in for a host's worker: subscribes to `channel`, hands each request (parsed JSON) to
 * `answer`, which replies (or not). Answers the requests it saw.
 */
async function fakeWorker(
  channel: string,
  answer: (request: { id: string } & Record<string, unknown>, replier: Redis) => Promise<void>,
): Promise<{ seen: Array<Record<string, unknown>>; stop: () => void }> {
  const subscriber = new Redis(local.url);
  const replier = new Redis(local.url);
  const seen: Array<Record<string, unknown>> = [];
  await subscriber.subscribe(channel);
  subscriber.on("message", (_channel: string, message: string) => {
    const request = JSON.parse(message) as { id: string } & Record<string, unknown>;
    seen.push(request);
    void answer(request, replier);
  });
  return {
    seen,
    stop: () => {
      subscriber.disconnect();
      replier.disconnect();
    },
  };
}

async function failure(promise: Promise<unknown>): Promise<VirtfleetError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VirtfleetError);
  return error as VirtfleetError;
}

/** Connections other than `redis` (the test's own) open now. */
async function connections(): Promise<number> {
  const list = (await local.redis.client("LIST")) as string;
  return list.split("\n").filter((line) => line.trim() !== "").length - 1;
}

describe("PowerClient: a power request to a host's worker and its answer", () => {
  it("publishes {id, vm, action} on the host's power channel and answers the worker's state and clockSet", async () => {
    const keys = new Keys(`pw-${Date.now()}`);
    const worker = await fakeWorker(keys.powerChannel("h1"), async (request, replier) => {
      await replyPower(replier, keys, request.id, { state: "running", clockSet: true });
    });
    const power = new PowerClient(local.redis, keys);
    try {
      expect(await power.power("h1", "vm-a", "resume")).toEqual({ state: "running", clockSet: true });
      expect(worker.seen).toEqual([{ id: expect.any(String), vm: "vm-a", action: "resume" }]);
      // The answer was popped: nothing is left behind.
      expect(await local.redis.exists(keys.powerReply(String(worker.seen[0]?.id)))).toBe(0);
    } finally {
      worker.stop();
      await power.close();
    }
  });

  it("no worker listening: HOST_NOT_FOUND naming the field host; no answer in time: COMMAND_TIMEOUT", async () => {
    const keys = new Keys(`pw-${Date.now()}`);
    const power = new PowerClient(local.redis, keys);
    try {
      const none = await failure(power.power("h-none", "vm-a", "suspend"));
      expect(none.code).toBe("HOST_NOT_FOUND");
      expect(none.field).toBe("host");
      expect(none.message).toBe('no worker of host "h-none" is up to suspend "vm-a"');
      const worker = await fakeWorker(keys.powerChannel("h1"), async () => undefined);
      try {
        const late = await failure(power.power("h1", "vm-a", "suspend", 300));
        expect(late.code).toBe("COMMAND_TIMEOUT");
        expect(late.message).toBe('host "h1" did not answer the suspend of "vm-a" within 300 ms');
      } finally {
        worker.stop();
      }
    } finally {
      await power.close();
    }
  });

  it("the worker's failure is passed on (VM_NOT_FOUND names vm, an unknown code is INTERNAL); a bad or empty answer is INTERNAL", async () => {
    const keys = new Keys(`pw-${Date.now()}`);
    const answers: unknown[] = [
      { error: { code: "VM_NOT_FOUND", message: "no VM here" } },
      { error: { code: "NOT_A_CODE", message: "odd" } },
      { state: 42 },
      {},
    ];
    const worker = await fakeWorker(keys.powerChannel("h1"), async (request, replier) => {
      await replier.lpush(keys.powerReply(request.id), JSON.stringify(answers.shift()));
    });
    const power = new PowerClient(local.redis, keys);
    try {
      const missing = await failure(power.power("h1", "vm-a", "resume"));
      expect([missing.code, missing.field, missing.message]).toEqual(["VM_NOT_FOUND", "vm", "no VM here"]);
      const odd = await failure(power.power("h1", "vm-a", "resume"));
      expect([odd.code, odd.field, odd.message]).toEqual(["INTERNAL", undefined, "odd"]);
      const bad = await failure(power.power("h1", "vm-a", "resume"));
      expect([bad.code, bad.message]).toEqual([
        "INTERNAL",
        'host "h1" answered the resume of "vm-a" with a bad result',
      ]);
      const empty = await failure(power.power("h1", "vm-a", "resume"));
      expect([empty.code, empty.message]).toEqual([
        "INTERNAL",
        'host "h1" answered the resume of "vm-a" without a state',
      ]);
    } finally {
      worker.stop();
      await power.close();
    }
    const closed = await failure(power.power("h1", "vm-a", "resume"));
    expect([closed.code, closed.message]).toEqual(["INTERNAL", "power client is closed"]);
  });

  it("a worker's answer is kept a minute for its asker", async () => {
    const keys = new Keys(`pw-${Date.now()}`);
    await replyPower(local.redis, keys, "r1", { state: "paused" });
    const ttl = await local.redis.pttl(keys.powerReply("r1"));
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(JSON.parse((await local.redis.lindex(keys.powerReply("r1"), 0)) ?? "null")).toEqual({ state: "paused" });
  });
});

describe("ConsoleClient: a console request to a host's worker and its answer", () => {
  it("publishes {id, vm, lines} on the host's console channel and answers the worker's lines and updatedAt", async () => {
    const keys = new Keys(`co-${Date.now()}`);
    const worker = await fakeWorker(keys.consoleChannel("h1"), async (request, replier) => {
      await replyConsole(replier, keys, request.id, { lines: ["a", "b"], updatedAt: "2026-11-30T12:00:00.000Z" });
    });
    const tails = new ConsoleClient(local.redis, keys);
    try {
      expect(await tails.tail("h1", "vm-a", 2)).toEqual({ lines: ["a", "b"], updatedAt: "2026-11-30T12:00:00.000Z" });
      expect(worker.seen).toEqual([{ id: expect.any(String), vm: "vm-a", lines: 2 }]);
      expect(await local.redis.exists(keys.consoleReply(String(worker.seen[0]?.id)))).toBe(0);
    } finally {
      worker.stop();
      await tails.close();
    }
    const ttlKeys = new Keys(`co-${Date.now()}`);
    await replyConsole(local.redis, ttlKeys, "r1", { lines: [], updatedAt: "2026-11-30T12:00:00.000Z" });
    const ttl = await local.redis.pttl(ttlKeys.consoleReply("r1"));
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it("no worker listening and no answer in time are both HOST_TIMEOUT", async () => {
    const keys = new Keys(`co-${Date.now()}`);
    const tails = new ConsoleClient(local.redis, keys);
    try {
      const none = await failure(tails.tail("h-none", "vm-a", 5));
      expect([none.code, none.field, none.message]).toEqual([
        "HOST_TIMEOUT",
        undefined,
        'no worker of host "h-none" is up to read the console of "vm-a"',
      ]);
      const worker = await fakeWorker(keys.consoleChannel("h1"), async () => undefined);
      try {
        const late = await failure(tails.tail("h1", "vm-a", 5, 300));
        expect([late.code, late.message]).toEqual([
          "HOST_TIMEOUT",
          'host "h1" did not answer for the console of "vm-a" within 300 ms',
        ]);
      } finally {
        worker.stop();
      }
    } finally {
      await tails.close();
    }
  });

  it("the worker's failure is passed on (VM_NOT_FOUND names name); a bad or empty answer is INTERNAL", async () => {
    const keys = new Keys(`co-${Date.now()}`);
    const answers: unknown[] = [
      { error: { code: "VM_NOT_FOUND", message: "no VM here" } },
      { error: { code: "COMMAND_FAILED", message: "could not read" } },
      "not an object",
      { lines: ["x"] },
    ];
    const worker = await fakeWorker(keys.consoleChannel("h1"), async (request, replier) => {
      await replier.lpush(keys.consoleReply(request.id), JSON.stringify(answers.shift()));
    });
    const tails = new ConsoleClient(local.redis, keys);
    try {
      const missing = await failure(tails.tail("h1", "vm-a", 5));
      expect([missing.code, missing.field, missing.message]).toEqual(["VM_NOT_FOUND", "name", "no VM here"]);
      const failed = await failure(tails.tail("h1", "vm-a", 5));
      expect([failed.code, failed.field, failed.message]).toEqual(["COMMAND_FAILED", undefined, "could not read"]);
      const bad = await failure(tails.tail("h1", "vm-a", 5));
      expect([bad.code, bad.message]).toEqual([
        "INTERNAL",
        'host "h1" answered for the console of "vm-a" with a bad result',
      ]);
      const empty = await failure(tails.tail("h1", "vm-a", 5));
      expect([empty.code, empty.message]).toEqual([
        "INTERNAL",
        'host "h1" answered for the console of "vm-a" without lines',
      ]);
    } finally {
      worker.stop();
      await tails.close();
    }
    const closed = await failure(tails.tail("h1", "vm-a", 5));
    expect([closed.code, closed.message]).toEqual(["INTERNAL", "console client is closed"]);
  });
});

describe("blocking connections: one per request in flight, kept for the next, closed with the client", () => {
  it("3 requests at once open 3 blocking connections; 5 more one after another open none; close() closes them all", async () => {
    const keys = new Keys(`cx-${Date.now()}`);
    const before = await connections();
    const held: Array<() => Promise<void>> = [];
    let released = false;
    const worker = await fakeWorker(keys.powerChannel("h1"), async (request, replier) => {
      const reply = () => replyPower(replier, keys, request.id, { state: "paused" });
      // The first three wait until all three are in flight; later ones are answered at once.
      if (held.length < 3 && !released) held.push(reply);
      else await reply();
    });
    const power = new PowerClient(local.redis, keys);
    try {
      const inFlight = [0, 1, 2].map(() => power.power("h1", "vm-a", "suspend"));
      const deadline = Date.now() + 5000;
      while (held.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(held.length).toBe(3);
      released = true;
      await Promise.all(held.map((reply) => reply()));
      expect((await Promise.all(inFlight)).map((r) => r.state)).toEqual(["paused", "paused", "paused"]);
      // The worker's own two connections and the client's three.
      expect(await connections()).toBe(before + 2 + 3);
      for (let i = 0; i < 5; i++) await power.power("h1", "vm-a", "suspend");
      expect(await connections()).toBe(before + 2 + 3);
    } finally {
      worker.stop();
      await power.close();
    }
    const deadline = Date.now() + 5000;
    while ((await connections()) > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await connections()).toBe(before);
  });
});
