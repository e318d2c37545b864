import { describe, expect, it } from "vitest";
import { parseOrThrow, ValidationError } from "./errors.js";
import {
  ClaimRequest,
  Duration,
  ExtendRequest,
  formatDuration,
  LabFile,
  LabName,
  LabUpRequest,
  MAX_DURATION_MS,
  PoolCreateRequest,
  PoolName,
  parseDurationMs,
  TemplateSpec,
} from "./labs.js";

/** The fields a ValidationError names when `fn` throws one (fails the test when it does not). */
function fieldsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).issues.map((i) => i.field);
  }
  throw new Error("expected a ValidationError");
}

describe("durations", () => {
  it.each([
    ["250ms", 250],
    ["90s", 90_000],
    ["30m", 1_800_000],
    ["2h", 7_200_000],
    ["1d", 86_400_000],
    [" 6h ", 21_600_000],
    ["0s", 0],
    [90, 90_000],
    [1.5, 1500],
  ] as const)("parseDurationMs(%j) = %i", (input, ms) => {
    expect(parseDurationMs(input)).toBe(ms);
  });

  it.each(["", "10", "1.5h", "-1s", "2 h", "2H", "1w", "h", "1h30m"])("parseDurationMs(%j) is not a duration", (s) => {
    expect(parseDurationMs(s)).toBeUndefined();
  });

  it("refuses negative and non-finite numbers of seconds", () => {
    for (const n of [-1, Number.NaN, Number.POSITIVE_INFINITY]) expect(parseDurationMs(n)).toBeUndefined();
  });

  it.each([
    [90_000, "90s"],
    [5_400_000, "90m"],
    [7_200_000, "2h"],
    [86_400_000, "1d"],
    [172_800_000, "2d"],
    [1500, "1500ms"],
    [0, "0ms"],
  ])("formatDuration(%i) = %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(parseDurationMs(text)).toBe(ms);
  });

  it("Duration parses to milliseconds and names the field of a bad one", () => {
    expect(Duration.parse("30m")).toBe(1_800_000);
    expect(Duration.parse(60)).toBe(60_000);
    expect(parseOrThrow(ClaimRequest, { ttl: "2h", wait: "60s" })).toEqual({ ttl: 7_200_000, wait: 60_000 });
    expect(fieldsOf(() => parseOrThrow(ClaimRequest, { ttl: "soon" }))).toEqual(["ttl"]);
    expect(fieldsOf(() => parseOrThrow(ExtendRequest, { by: "1 hour" }, "body"))).toEqual(["body.by"]);
    expect(fieldsOf(() => parseOrThrow(ExtendRequest, {}))).toEqual(["by"]);
  });

  it("a duration past MAX_DURATION_MS is refused (it would make dates that cannot be written)", () => {
    expect(Duration.parse(formatDuration(MAX_DURATION_MS))).toBe(MAX_DURATION_MS);
    expect(fieldsOf(() => parseOrThrow(ExtendRequest, { by: "99999999999d" }))).toEqual(["by"]);
    expect(fieldsOf(() => parseOrThrow(ClaimRequest, { ttl: 1e300 }))).toEqual(["ttl"]);
    expect(
      fieldsOf(() =>
        parseOrThrow(LabUpRequest, { name: "l", lab: { vms: [{ name: "a", template: "t" }] }, maxLifetime: "400d" }),
      ),
    ).toEqual(["maxLifetime"]);
  });
});

describe("names", () => {
  it("a pool's name leaves room for its VMs' suffix; a lab's for <name>-<n>", () => {
    expect(PoolName.safeParse("a".repeat(40)).success).toBe(true);
    expect(PoolName.safeParse("a".repeat(41)).success).toBe(false);
    expect(LabName.safeParse("a".repeat(31)).success).toBe(false);
    for (const bad of ["Web", "-web", "web-", "we_b", ""]) expect(PoolName.safeParse(bad).success, bad).toBe(false);
  });
});

describe("LabFile", () => {
  it("fills in defaults", () => {
    expect(LabFile.parse({ vms: [{ name: "web", template: "web" }] })).toEqual({
      vms: [{ name: "web", template: "web", count: 1 }],
      labels: {},
      antiAffinity: false,
      rollbackOnFailure: true,
    });
  });

  it("a VM name given twice is named by its place", () => {
    const file = {
      vms: [
        { name: "web", template: "web" },
        { name: "db", template: "db" },
        { name: "web", template: "web", count: 2 },
      ],
    };
    expect(fieldsOf(() => parseOrThrow(LabFile, file))).toEqual(["vms.2.name"]);
  });

  it("refuses more than 200 VMs in all, an empty list, an unknown key, a bad template name", () => {
    const big = { vms: Array.from({ length: 3 }, (_, i) => ({ name: `v${i}`, template: "t", count: 100 })) };
    expect(fieldsOf(() => parseOrThrow(LabFile, big))).toEqual(["vms"]);
    expect(fieldsOf(() => parseOrThrow(LabFile, { vms: [] }))).toEqual(["vms"]);
    expect(fieldsOf(() => parseOrThrow(LabFile, { vms: [{ name: "a", template: "t" }], ttl: "2h" }))).toEqual([
      "(root)",
    ]);
    expect(fieldsOf(() => parseOrThrow(LabFile, { vms: [{ name: "a", template: "T!" }] }))).toEqual(["vms.0.template"]);
  });
});

describe("PoolCreateRequest", () => {
  const pool = { name: "ci", template: "web", minReady: 3, max: 10 };

  it("parses durations and leaves the rest to the pool's defaults", () => {
    expect(PoolCreateRequest.parse({ ...pool, maxReadyAge: "6h", claimTtl: "30m" })).toEqual({
      ...pool,
      maxReadyAge: 21_600_000,
      claimTtl: 1_800_000,
    });
  });

  it("minReady above max names minReady", () => {
    expect(fieldsOf(() => parseOrThrow(PoolCreateRequest, { ...pool, minReady: 11 }, "body"))).toEqual([
      "body.minReady",
    ]);
    expect(PoolCreateRequest.safeParse({ ...pool, minReady: 10 }).success).toBe(true);
  });

  it("names each bad field", () => {
    expect(fieldsOf(() => parseOrThrow(PoolCreateRequest, { ...pool, idle: "sleep" }))).toEqual(["idle"]);
    expect(fieldsOf(() => parseOrThrow(PoolCreateRequest, { ...pool, max: 0 }))).toContain("max");
    expect(fieldsOf(() => parseOrThrow(PoolCreateRequest, { ...pool, maxReadyAge: "forever" }))).toEqual([
      "maxReadyAge",
    ]);
  });
});

describe("TemplateSpec", () => {
  const spec = { memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 2, backing: "deb.qcow2" }] };

  it("is a VM spec without name, plus guestReady", () => {
    expect(TemplateSpec.parse({ ...spec, guestReady: { strategy: "agent" } })).toMatchObject({
      memoryMiB: 256,
      install: { method: "import" },
      guestReady: { strategy: "agent" },
    });
    expect(fieldsOf(() => parseOrThrow(TemplateSpec, { ...spec, name: "web" }))).toEqual(["(root)"]);
  });

  it("an import needs a disk, as create's spec does", () => {
    expect(fieldsOf(() => parseOrThrow(TemplateSpec, { ...spec, disks: [] }))).toEqual(["disks"]);
  });
});
