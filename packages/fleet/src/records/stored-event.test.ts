import { Phase, ProgressEvent } from "@virtfleet/core";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { plainEvent, storedEvent } from "./stored-event.js";

/** What the schema makes of a value: the event with its id, or undefined. */
function bySchema(json: unknown, id: string): unknown {
  const parsed = ProgressEvent.safeParse(json);
  return parsed.success ? { ...parsed.data, id } : undefined;
}

const name = fc.oneof(
  fc.constantFrom("job-1", "a", "vm-7", "h.example_1", "Host-2", "x".repeat(63), "x".repeat(64), "y".repeat(129)),
  fc.constantFrom("", "-bad", "bad-", "UPPER", "a b", "a:b", "ünï", "9"),
  fc.string({ maxLength: 12 }),
);
const value = fc.oneof(
  name,
  fc.constantFrom(...Phase.options, "undefined", "create", "destroy", "nope"),
  fc.double({ min: -10, max: 110, noNaN: true }),
  fc.integer({ min: -1, max: 101 }),
  fc.constantFrom(null, true, 0, 100, [], {}, ["192.0.2.1"], { code: "INTERNAL", message: "x" }),
  // The edges of percent's range.
  fc.constantFrom(-0, -0.001, 100.0001, 100.5, 101, -1),
);
const field = fc.constantFrom(
  "jobId",
  "kind",
  "vm",
  "phase",
  "percent",
  "message",
  "host",
  "at",
  "error",
  "addresses",
  "extra",
  "__proto__",
);
// Events close to valid ones (each field valid, then some changed, added or removed), and anything.
const valid = fc.record(
  {
    jobId: fc.constantFrom("job-1", "j.2", "Job_3"),
    kind: fc.constantFrom("create", "destroy"),
    vm: fc.constantFrom("vm-1", "a", "web-02"),
    phase: fc.constantFrom(...Phase.options),
    percent: fc.integer({ min: 0, max: 100 }),
    message: fc.string(),
    host: fc.constantFrom("h1", "kvm-2.lab"),
    at: fc.constant("2026-11-30T19:00:00.000Z"),
  },
  { requiredKeys: ["jobId", "kind", "vm", "phase", "percent", "message", "at"] },
);
const event = fc.oneof(
  valid,
  fc
    .tuple(valid, fc.array(fc.tuple(field, fc.option(value, { nil: undefined })), { minLength: 1, maxLength: 2 }))
    .map(([e, changes]) => {
      // Through JSON, as the streams hold them (a key `__proto__` then is an own field).
      const o = JSON.parse(JSON.stringify(e)) as Record<string, unknown>;
      for (const [k, v] of changes) {
        if (v === undefined) delete o[k];
        else Object.defineProperty(o, k, { value: v, enumerable: true, configurable: true, writable: true });
      }
      return o;
    }),
  fc.anything(),
);

describe("storedEvent", () => {
  test("gives exactly what the ProgressEvent schema gives (fields, their order, the id), for any value", () => {
    fc.assert(
      fc.property(event, (json) => {
        const got = storedEvent(json, "1-0");
        const want = bySchema(json, "1-0");
        expect(got).toEqual(want);
        if (got !== undefined) expect(Object.keys(got)).toEqual(Object.keys(want as object));
      }),
      { numRuns: 5000 },
    );
  });

  test("takes the plain way only for events without an error, addresses or other fields", () => {
    const plain = { jobId: "j", kind: "create", vm: "v", phase: "placed", percent: 10, message: "", at: "t" };
    expect(plainEvent(plain)).toEqual(plain);
    expect(plainEvent({ ...plain, host: "h1" })).toEqual({ ...plain, host: "h1" });
    expect(plainEvent({ ...plain, addresses: ["192.0.2.1"] })).toBeUndefined();
    expect(plainEvent({ ...plain, error: { code: "INTERNAL", message: "x" } })).toBeUndefined();
    expect(plainEvent({ ...plain, phase: "undefined" })).toBeUndefined();
    expect(plainEvent({ ...plain, vm: "Bad_Name" })).toBeUndefined();
    // The legacy phase and the fields the plain way leaves out still parse (by the schema).
    expect(storedEvent({ ...plain, phase: "undefined" }, "1-0")?.phase).toBe("domain.undefined");
    expect(storedEvent({ ...plain, addresses: ["192.0.2.1"] }, "1-0")?.addresses).toEqual(["192.0.2.1"]);
  });
});
