import { describe, expect, it } from "vitest";
import { parseControllerEnv } from "./env.js";

describe("virtfleet-controller configuration", () => {
  it("fills the defaults and names a bad field", () => {
    expect(parseControllerEnv({})).toMatchObject({
      REDIS_URL: "redis://127.0.0.1:6379",
      VIRTFLEET_PREFIX: "virtfleet",
      VIRTFLEET_CONTROLLER_LOCK_MS: 15_000,
      VIRTFLEET_REAPER_INTERVAL_MS: 1000,
      redis: { url: "redis://127.0.0.1:6379" },
    });
    expect(() => parseControllerEnv({ VIRTFLEET_CONTROLLER_LOCK_MS: "10" })).toThrow(/VIRTFLEET_CONTROLLER_LOCK_MS/);
    expect(() => parseControllerEnv({ VIRTFLEET_PREFIX: "bad prefix" })).toThrow(/VIRTFLEET_PREFIX/);
  });

  it("the pool manager looks at every pool each second by default (VIRTFLEET_POOL_INTERVAL_MS)", () => {
    expect(parseControllerEnv({}).VIRTFLEET_POOL_INTERVAL_MS).toBe(1000);
    expect(parseControllerEnv({ VIRTFLEET_POOL_INTERVAL_MS: "250" }).VIRTFLEET_POOL_INTERVAL_MS).toBe(250);
    expect(() => parseControllerEnv({ VIRTFLEET_POOL_INTERVAL_MS: "soon" })).toThrow(/VIRTFLEET_POOL_INTERVAL_MS/);
  });
});
