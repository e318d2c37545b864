import { describe, expect, it } from "vitest";
import { AUTOSCALE_WINDOW_MS, autoscaleTarget, median } from "./autoscale.js";

const now = 1_000_000_000;
const minute = 60_000;

describe("median", () => {
  it("is the middle value, or the mean of the two middle ones", () => {
    expect(median([])).toBeUndefined();
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe("autoscaleTarget", () => {
  it("is minReady with no claims or no VM made yet", () => {
    expect(autoscaleTarget({ minReady: 2, max: 10, claimTimes: [], makeDurationsMs: [30_000], now })).toBe(2);
    expect(autoscaleTarget({ minReady: 2, max: 10, claimTimes: [now - 1000], makeDurationsMs: [], now })).toBe(2);
  });

  it("is claims per minute × minutes to make one, rounded up", () => {
    // 40 claims in 10 minutes = 4 a minute; a VM takes 90 s (median of 60, 90, 600) → 6 ready.
    const claimTimes = Array.from({ length: 40 }, (_, i) => now - i * 10_000);
    expect(autoscaleTarget({ minReady: 1, max: 50, claimTimes, makeDurationsMs: [60_000, 90_000, 600_000], now })).toBe(
      6,
    );
    // 3 claims in 10 minutes at 1 minute each: 0.3 → 1, and minReady 2 wins.
    expect(
      autoscaleTarget({
        minReady: 2,
        max: 50,
        claimTimes: [now - 1, now - 2, now - 3],
        makeDurationsMs: [minute],
        now,
      }),
    ).toBe(2);
  });

  it("ignores claims older than the window", () => {
    const old = Array.from({ length: 100 }, (_, i) => now - AUTOSCALE_WINDOW_MS - 1 - i);
    expect(autoscaleTarget({ minReady: 1, max: 50, claimTimes: old, makeDurationsMs: [minute], now })).toBe(1);
  });

  it("never goes above max", () => {
    const claimTimes = Array.from({ length: 500 }, (_, i) => now - i * 1000);
    expect(autoscaleTarget({ minReady: 1, max: 7, claimTimes, makeDurationsMs: [5 * minute], now })).toBe(7);
  });
});
