import { afterEach, describe, expect, it, vi } from "vitest";
import { isoNow } from "./clock.js";

describe("isoNow", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is the current time as new Date().toISOString() gives it", () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date("2026-01-02T03:04:05.678Z"));
    expect(isoNow()).toBe("2026-01-02T03:04:05.678Z");
    expect(isoNow()).toBe(new Date().toISOString());
  });

  it("follows the clock millisecond by millisecond, backwards too", () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date("2026-01-02T03:04:05.678Z"));
    expect(isoNow()).toBe("2026-01-02T03:04:05.678Z");
    vi.setSystemTime(new Date("2026-01-02T03:04:05.679Z"));
    expect(isoNow()).toBe("2026-01-02T03:04:05.679Z");
    vi.setSystemTime(new Date("2025-12-31T23:59:59.999Z"));
    expect(isoNow()).toBe("2025-12-31T23:59:59.999Z");
  });

  it("matches the real clock", () => {
    const before = Date.now();
    const at = Date.parse(isoNow());
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());
  });
});
