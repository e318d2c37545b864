import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareStreamIds } from "./job-event-hub.js";

/** The reference: both parts as BigInt ("0" when missing or empty). */
function reference(a: string, b: string): number {
  const [am = "0", as = "0"] = a.split("-");
  const [bm = "0", bs = "0"] = b.split("-");
  const ms = BigInt(am || "0") - BigInt(bm || "0");
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as || "0") - BigInt(bs || "0");
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

const digits = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
  fc.nat({ max: 20 }).map(String),
  // Leading zeros (a Last-Event-ID may carry them).
  fc.tuple(fc.nat({ max: 3 }), fc.nat({ max: 999 })).map(([z, n]) => `${"0".repeat(z)}${n}`),
);
const streamId = fc.oneof(
  fc.tuple(digits, digits).map(([ms, seq]) => `${ms}-${seq}`),
  digits,
  fc.constant("0"),
);

describe("compareStreamIds", () => {
  it("orders any two stream ids as their numbers do (ms, then seq), exactly, at any size", () => {
    fc.assert(
      fc.property(streamId, streamId, (a, b) => {
        expect(compareStreamIds(a, b)).toBe(reference(a, b));
        expect(compareStreamIds(b, a)).toBe(reference(b, a));
      }),
      { numRuns: 2000 },
    );
    expect(compareStreamIds("1764500000000-10", "1764500000000-9")).toBe(1);
    expect(compareStreamIds("999-0", "1000-0")).toBe(-1);
    expect(compareStreamIds("0", "0-0")).toBe(0);
    expect(
      compareStreamIds("18446744073709551615-18446744073709551615", "18446744073709551615-18446744073709551614"),
    ).toBe(1);
  });

  it("throws on a string that is not a stream id", () => {
    expect(() => compareStreamIds("abc", "1-0")).toThrow(SyntaxError);
    expect(() => compareStreamIds("1-0", "1-x")).toThrow(SyntaxError);
  });
});
