import { VirtfleetError } from "@virtfleet/core";
import { describe, expect, it } from "vitest";
import { classifyFailure, ExecaRunner } from "./runner.js";

async function rejection(promise: Promise<unknown>): Promise<VirtfleetError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(VirtfleetError);
    return error as VirtfleetError;
  }
  throw new Error("expected a rejection");
}

describe("ExecaRunner", () => {
  const runner = new ExecaRunner();

  it("runs a program that succeeds", async () => {
    await expect(runner.run("true", [])).resolves.toEqual({ stdout: "", stderr: "" });
  });

  it("gives back stdout and stderr", async () => {
    const result = await runner.run(process.execPath, [
      "-e",
      "process.stdout.write('out'); process.stderr.write('err')",
    ]);
    expect(result).toEqual({ stdout: "out", stderr: "err" });
  });

  it("passes arguments as argv, never through a shell", async () => {
    const tricky = "a b; echo injected $(id) `id` | cat";
    const { stdout } = await runner.run(process.execPath, [
      "-e",
      "process.stdout.write(JSON.stringify(process.argv.slice(1)))",
      tricky,
    ]);
    expect(JSON.parse(stdout)).toEqual([tricky]);
  });

  it("runs with LC_ALL=C", async () => {
    const { stdout } = await runner.run(process.execPath, ["-e", "process.stdout.write(process.env.LC_ALL ?? '')"]);
    expect(stdout).toBe("C");
  });

  it("throws COMMAND_FAILED with exit code, stderr and argv for a failing program", async () => {
    const args = ["-e", "process.stderr.write('oops\\n'); process.exit(3)"];
    const error = await rejection(runner.run(process.execPath, args));
    expect(error.code).toBe("COMMAND_FAILED");
    expect(error.exitCode).toBe(3);
    expect(error.stderr).toContain("oops");
    expect(error.command).toEqual([process.execPath, ...args]);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain("exit 3");
    expect(error.message).toContain("oops");
  });

  it("throws COMMAND_FAILED for a shell failure too", async () => {
    const error = await rejection(runner.run("sh", ["-c", "echo oops >&2; exit 3"]));
    expect(error.code).toBe("COMMAND_FAILED");
    expect(error.exitCode).toBe(3);
    expect(error.stderr).toContain("oops");
    expect(error.command).toEqual(["sh", "-c", "echo oops >&2; exit 3"]);
  });

  it("throws COMMAND_FAILED for a program that does not exist", async () => {
    const error = await rejection(runner.run("virtfleet-no-such-program-xyz", []));
    expect(error.code).toBe("COMMAND_FAILED");
    expect(error.command).toEqual(["virtfleet-no-such-program-xyz"]);
  });

  it("classifies the failure by stderr: OUT_OF_DISK", async () => {
    const error = await rejection(
      runner.run(process.execPath, [
        "-e",
        "process.stderr.write('qemu-img: error: No space left on device'); process.exit(1)",
      ]),
    );
    expect(error.code).toBe("OUT_OF_DISK");
    expect(error.exitCode).toBe(1);
  });

  it("classifies the failure by stderr: LIBVIRT_UNAVAILABLE, retryable", async () => {
    const error = await rejection(
      runner.run(process.execPath, [
        "-e",
        "process.stderr.write(\"error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\"); process.exit(1)",
      ]),
    );
    expect(error.code).toBe("LIBVIRT_UNAVAILABLE");
    expect(error.retryable).toBe(true);
  });

  it("throws COMMAND_TIMEOUT when a command outlives its timeout", async () => {
    const started = Date.now();
    const error = await rejection(runner.run("sleep", ["5"], { timeoutMs: 200 }));
    expect(error.code).toBe("COMMAND_TIMEOUT");
    expect(error.retryable).toBe(true);
    expect(error.command).toEqual(["sleep", "5"]);
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it("uses the default timeout when none is given", async () => {
    const quick = new ExecaRunner({ defaultTimeoutMs: 200 });
    expect((await rejection(quick.run("sleep", ["5"]))).code).toBe("COMMAND_TIMEOUT");
  });

  it("throws CANCELLED when aborted", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    const error = await rejection(runner.run("sleep", ["5"], { signal: controller.signal }));
    expect(error.code).toBe("CANCELLED");
    expect(error.retryable).toBe(false);
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it("does not start a command when already aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(runner.run("sleep", ["5"], { signal: controller.signal }));
    expect(error.code).toBe("CANCELLED");
    expect(error.message).toContain("not started");
  });

  it("logs the argv it runs", async () => {
    const logged: object[] = [];
    const logging = new ExecaRunner({ logger: { debug: (obj) => logged.push(obj) } });
    await logging.run("true", ["x"]);
    expect(logged[0]).toMatchObject({ argv: ["true", "x"] });
    expect(logged).toHaveLength(2);
  });
});

describe("classifyFailure", () => {
  it.each([
    ["qemu-img: /x: No space left on device", "OUT_OF_DISK"],
    ["write failed: ENOSPC", "OUT_OF_DISK"],
    [
      "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory",
      "LIBVIRT_UNAVAILABLE",
    ],
    ["error: failed to connect to the hypervisor", "LIBVIRT_UNAVAILABLE"],
    ["error: End of file while reading data: Input/output error", "LIBVIRT_UNAVAILABLE"],
    ["error: Timed out during operation: cannot acquire state change lock", "LIBVIRT_UNAVAILABLE"],
    ["error: Domain not found", "COMMAND_FAILED"],
    ["", "COMMAND_FAILED"],
  ])("%j is %s", (stderr, code) => {
    expect(classifyFailure(stderr)).toBe(code);
  });
});
