import { VirtfleetError } from "@virtfleet/core";
import { describe, expect, it } from "vitest";
import { JobRecord, parseRecord, VmRecord } from "./records.js";

describe("JobRecord", () => {
  it("parses a stored job hash: numbers, JSON error, batch as batchId, cancelRequested as a boolean", () => {
    const r = JobRecord.parse({
      jobId: "create-1",
      kind: "create",
      vm: "web-1",
      hostId: "h1",
      phase: "failed",
      percent: "100",
      message: "boom",
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:01.000Z",
      error: JSON.stringify({ code: "HOST_LOST", message: "gone" }),
      tenant: "acme",
      batch: "batch-1",
      callbackUrl: "https://example.com/hook",
      cancelRequested: "1",
    });
    expect(r).toEqual({
      jobId: "create-1",
      kind: "create",
      vm: "web-1",
      hostId: "h1",
      phase: "failed",
      percent: 100,
      message: "boom",
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:01.000Z",
      error: { code: "HOST_LOST", message: "gone" },
      tenant: "acme",
      batchId: "batch-1",
      callbackUrl: "https://example.com/hook",
      cancelRequested: true,
    });
  });

  it("fills what an older record lacks: phase queued, percent 0, empty strings, not cancelled", () => {
    expect(JobRecord.parse({ jobId: "destroy-1", kind: "destroy" })).toMatchObject({
      vm: "",
      phase: "queued",
      percent: 0,
      message: "",
      hostId: undefined,
      error: undefined,
      cancelRequested: false,
    });
  });

  it.each([
    [{ kind: "create" }, "jobId"],
    [{ jobId: "j", kind: "reboot" }, "kind"],
    [{ jobId: "j", kind: "create", phase: "exploded" }, "phase"],
    [{ jobId: "j", kind: "create", percent: "lots" }, "percent"],
    [{ jobId: "j", kind: "create", percent: "101" }, "percent"],
    [{ jobId: "j", kind: "create", error: "{" }, "error"],
    [{ jobId: "j", kind: "create", error: JSON.stringify({ code: "NOPE", message: "x" }) }, "error"],
    [{ jobId: "j", kind: "create", cancelRequested: "yes" }, "cancelRequested"],
  ])("refuses %j naming %s", (hash, field) => {
    const error = (() => {
      try {
        parseRecord(JobRecord, hash as Record<string, string>, "job j");
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(VirtfleetError);
    expect(error).toMatchObject({ code: "INTERNAL", field, retryable: false });
    expect((error as Error).message).toMatch(new RegExp(`^job j in Redis is invalid: ${field}: `));
  });
});

describe("VmRecord", () => {
  const stored = {
    name: "web-1",
    hostId: "h1",
    state: "running",
    fingerprint: "abc",
    jobId: "create-1",
    memoryMiB: "512",
    vcpus: "2",
    labels: JSON.stringify({ team: "a" }),
    group: "",
    tenant: "",
    updatedAt: "2026-01-01T00:00:00.000Z",
  };

  it("parses a stored VM hash: counts, JSON labels, empty group and tenant as none", () => {
    expect(VmRecord.parse(stored)).toEqual({
      name: "web-1",
      hostId: "h1",
      state: "running",
      fingerprint: "abc",
      jobId: "create-1",
      memoryMiB: 512,
      vcpus: 2,
      labels: { team: "a" },
      updatedAt: "2026-01-01T00:00:00.000Z",
    });
    expect(VmRecord.parse({ ...stored, group: "g", tenant: "acme" })).toMatchObject({ group: "g", tenant: "acme" });
  });

  it("reads addresses that are not a JSON list of strings as none", () => {
    expect(VmRecord.parse({ ...stored, addresses: '["192.0.2.1"]' }).addresses).toEqual(["192.0.2.1"]);
    expect(VmRecord.parse({ ...stored, addresses: "{" }).addresses).toEqual([]);
    expect(VmRecord.parse({ ...stored, addresses: "[1]" }).addresses).toEqual([]);
    expect(VmRecord.parse(stored)).not.toHaveProperty("addresses");
  });

  it("fills what an admitted record lacks: no host yet, state failed when unknown, no labels", () => {
    expect(VmRecord.parse({ name: "web-2" })).toMatchObject({ hostId: "", state: "failed", labels: {}, memoryMiB: 0 });
  });

  it.each([
    [{ hostId: "h1" }, "name"],
    [{ state: "melted" }, "state"],
    [{ memoryMiB: "-1" }, "memoryMiB"],
    [{ vcpus: "two" }, "vcpus"],
    [{ labels: "[1" }, "labels"],
    [{ labels: JSON.stringify({ team: 1 }) }, "labels"],
  ])("refuses %j naming %s", (fields, field) => {
    const hash = { ...stored, ...fields } as Record<string, string>;
    if (field === "name") delete hash.name;
    expect(() => parseRecord(VmRecord, hash, "VM web-1")).toThrow(
      expect.objectContaining({ code: "INTERNAL", field }) as Error,
    );
  });
});
