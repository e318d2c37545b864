import { Redis } from "ioredis";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import type { ControllerLoop } from "../deps.js";
import { LabKeys } from "../keys.js";
import { Controller } from "./controller.js";

const logger = pino({ level: "silent" });

function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(poll, 20);
    };
    poll();
  });
}

/** A loop that counts its ticks and checks two never overlap. */
function countingLoop(name: string, intervalMs: number, tickMs = 0) {
  const state = { ticks: 0, overlapped: false, running: false, throws: false };
  const loop: ControllerLoop = {
    name,
    intervalMs,
    async tick() {
      if (state.running) state.overlapped = true;
      state.running = true;
      state.ticks++;
      await new Promise((r) => setTimeout(r, tickMs));
      state.running = false;
      if (state.throws) throw new Error("tick failed");
    },
  };
  return { loop, state };
}

describe("Controller against real Redis", () => {
  test("of two, only the lock holder runs the loops; a leader that dies hands over once its lock expires", async ({
    redisUrl,
    prefix,
  }) => {
    const keys = new LabKeys(prefix);
    const ra = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    const rb = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    const la = countingLoop("reaper", 50);
    const lb = countingLoop("reaper", 50);
    const a = new Controller({ redis: ra, keys, logger, loops: [la.loop], lockMs: 600 });
    const b = new Controller({ redis: rb, keys, logger, loops: [lb.loop], lockMs: 600 });
    await a.start();
    await b.start();
    await until("a few ticks", () => la.state.ticks >= 3);
    expect(a.leader).toBe(true);
    expect(b.leader).toBe(false);
    expect(lb.state.ticks).toBe(0);

    // A dies without giving its lock up (its connection is gone): B takes over when the lock expires.
    ra.disconnect();
    await until("b elected", () => b.leader, 5000);
    await until("b ticks", () => lb.state.ticks >= 2);
    await until("a steps down", () => !a.leader, 5000);
    const aTicks = la.state.ticks;
    await new Promise((r) => setTimeout(r, 200));
    expect(la.state.ticks).toBe(aTicks);
    await a.close();
    await b.close();
    // B gave its lock up on close.
    const check = new Redis(redisUrl);
    expect(await check.get(keys.controllerLock())).toBeNull();
    check.disconnect();
    rb.disconnect();
  });

  test("close hands over at once; wake runs a tick soon; a tick never overlaps itself; a failing tick is retried", async ({
    redisUrl,
    prefix,
  }) => {
    const keys = new LabKeys(prefix);
    const ra = new Redis(redisUrl);
    const rb = new Redis(redisUrl);
    const la = countingLoop("pools", 60_000, 30);
    const lb = countingLoop("pools", 60_000, 30);
    const a = new Controller({ redis: ra, keys, logger, loops: [la.loop], lockMs: 60_000 });
    const b = new Controller({ redis: rb, keys, logger, loops: [lb.loop], lockMs: 300 });
    await a.start();
    await b.start();
    await until("first tick", () => la.state.ticks === 1);
    // The interval is a minute: only wake makes it tick again; many wakes at once never overlap.
    la.state.throws = true;
    for (let i = 0; i < 10; i++) a.wake("pools");
    await until("woken", () => la.state.ticks >= 2);
    await new Promise((r) => setTimeout(r, 150));
    la.state.throws = false;
    a.wake("pools");
    await until("woken again after a failed tick", () => la.state.ticks >= 3 && !la.state.running);
    expect(la.state.overlapped).toBe(false);
    expect(la.state.ticks).toBeLessThanOrEqual(4);
    b.wake("pools"); // not the leader: nothing
    // A's lock lives a minute, but close gives it up: B takes over at its next try.
    await a.close();
    await until("b elected", () => b.leader, 3000);
    await until("b ticks", () => lb.state.ticks >= 1);
    await b.close();
    ra.disconnect();
    rb.disconnect();
  });
});
