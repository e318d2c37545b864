import { describe, expect, it } from "vitest";
import { NameLocks } from "./name-locks.js";

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 10));

describe("NameLocks", () => {
  it("serializes two acquires of the same name", async () => {
    const locks = new NameLocks();
    const order: string[] = [];
    const release1 = await locks.acquire("budgie");
    let secondHeld = false;
    const second = locks.acquire("budgie").then((release) => {
      secondHeld = true;
      order.push("second acquired");
      return release;
    });
    await tick();
    expect(secondHeld).toBe(false);
    order.push("first released");
    release1();
    const release2 = await second;
    expect(secondHeld).toBe(true);
    expect(order).toEqual(["first released", "second acquired"]);
    release2();
  });

  it("hands the lock on in acquire order", async () => {
    const locks = new NameLocks();
    const order: number[] = [];
    const work = async (n: number, ms: number) => {
      const release = await locks.acquire("vm");
      order.push(n);
      await new Promise((resolve) => setTimeout(resolve, ms));
      order.push(-n);
      release();
    };
    await Promise.all([work(1, 30), work(2, 5), work(3, 10)]);
    expect(order).toEqual([1, -1, 2, -2, 3, -3]);
  });

  it("runs different names concurrently", async () => {
    const locks = new NameLocks();
    const releaseA = await locks.acquire("a");
    let bHeld = false;
    const b = locks.acquire("b").then((release) => {
      bHeld = true;
      return release;
    });
    await tick();
    expect(bHeld).toBe(true);
    (await b)();
    releaseA();
  });

  it("lets the name be taken again after release", async () => {
    const locks = new NameLocks();
    (await locks.acquire("x"))();
    let held = false;
    const again = locks.acquire("x").then((release) => {
      held = true;
      return release;
    });
    await tick();
    expect(held).toBe(true);
    (await again)();
  });

  it("keeps a third waiter behind the second after the first releases", async () => {
    const locks = new NameLocks();
    const r1 = await locks.acquire("x");
    const p2 = locks.acquire("x");
    let thirdHeld = false;
    const p3 = locks.acquire("x").then((release) => {
      thirdHeld = true;
      return release;
    });
    r1();
    const r2 = await p2;
    await tick();
    expect(thirdHeld).toBe(false);
    r2();
    (await p3)();
    expect(thirdHeld).toBe(true);
  });

  it("says whether a name's lock is held or waited for, until the last holder releases it", async () => {
    const locks = new NameLocks();
    expect(locks.held("x")).toBe(false);
    const r1 = await locks.acquire("x");
    expect(locks.held("x")).toBe(true);
    expect(locks.held("y")).toBe(false);
    const p2 = locks.acquire("x");
    r1();
    expect(locks.held("x")).toBe(true); // the second is next
    (await p2)();
    expect(locks.held("x")).toBe(false);
  });
});
