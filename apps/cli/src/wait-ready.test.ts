import { DEFAULT_READY_TIMEOUT_SEC, GuestReadyOptions, ValidationError } from "@virtfleet/core";
import { describe, expect, it } from "vitest";
import { parseWaitReady } from "./wait-ready.js";

function fieldOf(fn: () => unknown): { field: string | undefined; message: string } {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    const e = error as ValidationError;
    return { field: e.field, message: e.message };
  }
  throw new Error("expected a ValidationError");
}

describe("--wait-ready STRATEGY", () => {
  it.each([
    [true, {}, { strategy: "console", pattern: "VIRTFLEET_READY", timeoutSec: 120 }],
    ["console", { strategy: "console" }, { strategy: "console", pattern: "VIRTFLEET_READY", timeoutSec: 120 }],
    [
      "console=login:",
      { strategy: "console", pattern: "login:" },
      { strategy: "console", pattern: "login:", timeoutSec: 120 },
    ],
    ["console=a=b", { strategy: "console", pattern: "a=b" }, { strategy: "console", pattern: "a=b", timeoutSec: 120 }],
    ["agent", { strategy: "agent" }, { strategy: "agent", timeoutSec: DEFAULT_READY_TIMEOUT_SEC.agent }],
    ["ip", { strategy: "ip" }, { strategy: "ip", timeoutSec: DEFAULT_READY_TIMEOUT_SEC.ip }],
    ["cloud-init", { strategy: "cloud-init" }, { strategy: "cloud-init", timeoutSec: 600 }],
    // A bare pattern, as before: console=PATTERN.
    ["BOOTED", { strategy: "console", pattern: "BOOTED" }, { strategy: "console", pattern: "BOOTED", timeoutSec: 120 }],
    ["x=1", { strategy: "console", pattern: "x=1" }, { strategy: "console", pattern: "x=1", timeoutSec: 120 }],
  ] as const)("%j", (raw, input, parsed) => {
    expect(parseWaitReady(raw, undefined)).toEqual(input);
    expect(GuestReadyOptions.parse(parseWaitReady(raw, undefined))).toEqual(parsed);
  });

  it("takes --ready-timeout over the strategy's default", () => {
    expect(GuestReadyOptions.parse(parseWaitReady("ip", 45))).toEqual({ strategy: "ip", timeoutSec: 45 });
  });

  it("names the flag of a bad value", () => {
    expect(fieldOf(() => parseWaitReady("agent=5", undefined))).toMatchObject({ field: "--wait-ready" });
    expect(fieldOf(() => parseWaitReady("console=", undefined))).toMatchObject({ field: "--wait-ready" });
    expect(fieldOf(() => parseWaitReady("x".repeat(300), undefined))).toMatchObject({ field: "--wait-ready" });
    expect(fieldOf(() => parseWaitReady("ip", 4000))).toMatchObject({ field: "--ready-timeout" });
  });
});

describe("the API's guestReady", () => {
  it("still reads today's {pattern, timeoutSec} as a console wait", () => {
    expect(GuestReadyOptions.parse({ pattern: "READY", timeoutSec: 60 })).toEqual({
      strategy: "console",
      pattern: "READY",
      timeoutSec: 60,
    });
    expect(GuestReadyOptions.parse({})).toEqual({ strategy: "console", pattern: "VIRTFLEET_READY", timeoutSec: 120 });
  });

  it("refuses a pattern with another strategy, and an unknown strategy, naming the field", () => {
    const bad = GuestReadyOptions.safeParse({ strategy: "ip", pattern: "x" });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(["pattern"]);
    const unknown = GuestReadyOptions.safeParse({ strategy: "ssh" });
    expect(unknown.error?.issues[0]?.path).toEqual(["strategy"]);
  });

  it("reads its own output again unchanged (a job payload is parsed by the worker)", () => {
    for (const input of [{}, { strategy: "agent" as const }, { strategy: "cloud-init" as const, timeoutSec: 9 }]) {
      const once = GuestReadyOptions.parse(input);
      expect(GuestReadyOptions.parse(once)).toEqual(once);
    }
  });
});
