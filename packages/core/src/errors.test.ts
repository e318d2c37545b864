import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ErrorInfo,
  isPermanent,
  parseOrThrow,
  toErrorInfo,
  toValidationError,
  ValidationError,
  VirtfleetError,
} from "./errors.js";
import { VmSpec } from "./vm-spec.js";

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

describe("toValidationError", () => {
  it("turns zod paths into dotted fields under the prefix", () => {
    const result = VmSpec.safeParse({ name: "budgie", memoryMiB: 10, vcpus: 1, disks: [{ sizeGiB: 0 }] });
    expect(result.success).toBe(false);
    if (result.success) return;
    const error = toValidationError(result.error, "spec");
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toBeInstanceOf(VirtfleetError);
    expect(error.code).toBe("INVALID_SPEC");
    const fields = error.issues.map((i) => i.field);
    expect(fields).toContain("spec.memoryMiB");
    expect(fields).toContain("spec.disks.0.sizeGiB");
    expect(error.field).toBe(fields[0]);
    expect(error.message).toContain("spec.memoryMiB: must be at least 64 MiB");
  });

  it("without a prefix gives the bare path", () => {
    const result = z.object({ a: z.object({ b: z.number() }) }).safeParse({ a: { b: "x" } });
    if (result.success) throw new Error("expected failure");
    expect(toValidationError(result.error).issues.map((i) => i.field)).toEqual(["a.b"]);
  });

  it("names a root-level issue (root) without a prefix, and the prefix with one", () => {
    const result = z.string().safeParse(5);
    if (result.success) throw new Error("expected failure");
    expect(toValidationError(result.error).field).toBe("(root)");
    expect(toValidationError(result.error, "name").field).toBe("name");
  });
});

describe("parseOrThrow", () => {
  it("returns the parsed value with defaults", () => {
    const spec = parseOrThrow(VmSpec, { name: "a", memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] }, "spec");
    expect(spec.osVariant).toBe("generic");
  });

  it("throws a ValidationError naming spec.memoryMiB", () => {
    const error = thrown(() =>
      parseOrThrow(VmSpec, { name: "a", memoryMiB: 63.5, vcpus: 1, disks: [{ sizeGiB: 1 }] }, "spec"),
    );
    expect(error).toBeInstanceOf(ValidationError);
    const v = error as ValidationError;
    expect(v.code).toBe("INVALID_SPEC");
    expect(v.field).toBe("spec.memoryMiB");
    expect(v.retryable).toBe(false);
    expect(v.toInfo()).toMatchObject({ code: "INVALID_SPEC", field: "spec.memoryMiB" });
  });

  it("throws a ValidationError naming spec.disks for an import without disks", () => {
    const error = thrown(() => parseOrThrow(VmSpec, { name: "a", memoryMiB: 64, vcpus: 1 }, "spec")) as ValidationError;
    expect(error.issues).toEqual([{ field: "spec.disks", message: "--import needs at least one disk to boot from" }]);
  });
});

describe("ValidationError", () => {
  it("with no issues says invalid input and has no field", () => {
    const error = new ValidationError([]);
    expect(error.message).toBe("invalid input");
    expect(error.field).toBeUndefined();
    expect(error.name).toBe("ValidationError");
  });

  it("joins all issues in its message", () => {
    const error = new ValidationError([
      { field: "--memory", message: "is required" },
      { field: "--name", message: "bad" },
    ]);
    expect(error.message).toBe("--memory: is required; --name: bad");
    expect(error.field).toBe("--memory");
  });
});

describe("VirtfleetError.retryable", () => {
  it.each(["COMMAND_FAILED", "INVALID_SPEC", "IMAGE_NOT_FOUND", "NAME_CLASH", "OUT_OF_DISK", "CANCELLED"] as const)(
    "%s is permanent by default",
    (code) => {
      expect(new VirtfleetError(code, "x").retryable).toBe(false);
      expect(isPermanent(code)).toBe(true);
    },
  );

  it.each(["LIBVIRT_UNAVAILABLE", "COMMAND_TIMEOUT", "HOST_LOST", "INTERNAL"] as const)(
    "%s is retryable by default",
    (code) => {
      expect(new VirtfleetError(code, "x").retryable).toBe(true);
      expect(isPermanent(code)).toBe(false);
    },
  );

  it("can be overridden either way", () => {
    expect(new VirtfleetError("COMMAND_FAILED", "x", { retryable: true }).retryable).toBe(true);
    expect(new VirtfleetError("LIBVIRT_UNAVAILABLE", "x", { retryable: false }).retryable).toBe(false);
  });
});

describe("VirtfleetError.toInfo", () => {
  it("includes command, exitCode and stderr, and validates as ErrorInfo", () => {
    const command = ["virsh", "-c", "qemu:///system", "start", "budgie"];
    const error = new VirtfleetError("COMMAND_FAILED", "virsh failed", {
      command,
      exitCode: 1,
      stderr: "error: boom",
      field: "spec.name",
    });
    const info = error.toInfo();
    expect(info).toEqual({
      code: "COMMAND_FAILED",
      message: "virsh failed",
      field: "spec.name",
      command,
      exitCode: 1,
      stderr: "error: boom",
    });
    expect(info.command).not.toBe(command);
    expect(ErrorInfo.safeParse(info).success).toBe(true);
  });

  it("leaves out what is not set", () => {
    expect(new VirtfleetError("NAME_CLASH", "taken").toInfo()).toEqual({ code: "NAME_CLASH", message: "taken" });
  });

  it("keeps the cause and the name", () => {
    const cause = new Error("root");
    const error = new VirtfleetError("INTERNAL", "wrapped", { cause });
    expect(error.cause).toBe(cause);
    expect(error.name).toBe("VirtfleetError");
    expect(error).toBeInstanceOf(Error);
  });
});

describe("toErrorInfo", () => {
  it("gives INTERNAL for a plain Error", () => {
    expect(toErrorInfo(new Error("kaput"))).toEqual({ code: "INTERNAL", message: "kaput" });
  });

  it("gives INTERNAL for a thrown non-Error", () => {
    expect(toErrorInfo("just a string")).toEqual({ code: "INTERNAL", message: "just a string" });
  });

  it("uses toInfo for a VirtfleetError", () => {
    const error = new VirtfleetError("COMMAND_TIMEOUT", "slow", { command: ["sleep", "5"] });
    expect(toErrorInfo(error)).toEqual({ code: "COMMAND_TIMEOUT", message: "slow", command: ["sleep", "5"] });
  });
});
