import { describe, expect, it } from "vitest";
import {
  agentCommands,
  isAgentNotConfiguredError,
  isNoDomainError,
  parseDomState,
  parseNodeinfo,
  virsh,
} from "./virsh.js";

const uri = "qemu:///system";

describe("virsh argv builders", () => {
  it("name the URI first and the domain as one entry", () => {
    expect(virsh.domstate(uri, "budgie")).toEqual(["-c", uri, "domstate", "budgie"]);
    expect(virsh.dumpxml(uri, "budgie")).toEqual(["-c", uri, "dumpxml", "budgie"]);
    expect(virsh.listAll(uri)).toEqual(["-c", uri, "list", "--all", "--name"]);
    expect(virsh.start(uri, "budgie")).toEqual(["-c", uri, "start", "budgie"]);
    expect(virsh.destroy(uri, "budgie")).toEqual(["-c", uri, "destroy", "budgie"]);
    expect(virsh.undefine(uri, "budgie")).toEqual(["-c", uri, "undefine", "budgie", "--nvram"]);
    expect(virsh.nodeinfo(uri)).toEqual(["-c", uri, "nodeinfo"]);
    expect(virsh.version(uri)).toEqual(["-c", uri, "version"]);
  });

  it("build suspend, resume and the guest clock after a resume", () => {
    expect(virsh.suspend(uri, "budgie")).toEqual(["-c", uri, "suspend", "budgie"]);
    expect(virsh.resume(uri, "budgie")).toEqual(["-c", uri, "resume", "budgie"]);
    // guest-set-time without arguments: the guest reads its RTC (which QEMU keeps on the host's time).
    expect(virsh.qemuAgentCommand(uri, "budgie", agentCommands.setTime(), 2)).toEqual([
      "-c",
      uri,
      "qemu-agent-command",
      "budgie",
      '{"execute":"guest-set-time"}',
      "--timeout",
      "2",
    ]);
  });

  it("tell a guest without an agent channel", () => {
    expect(isAgentNotConfiguredError("error: argument unsupported: QEMU guest agent is not configured\n")).toBe(true);
    expect(isAgentNotConfiguredError("error: failed to get domain 'x'")).toBe(false);
  });

  it("build metadata get", () => {
    expect(virsh.metadataGet(uri, "budgie", "https://ns/1")).toEqual(["-c", uri, "metadata", "budgie", "https://ns/1"]);
  });
});

describe("parseDomState", () => {
  it.each([
    ["running\n\n", "running"],
    ["shut off", "shut off"],
    ["shut off\n", "shut off"],
    ["  paused  \n", "paused"],
    ["in shutdown\n\n", "in shutdown"],
    ["crashed", "crashed"],
    ["pmsuspended\n", "pmsuspended"],
    ["idle", "idle"],
    ["junk", "unknown"],
    ["", "unknown"],
    ["Running", "unknown"],
    ["shut  off", "unknown"],
  ])("%j is %s", (stdout, state) => {
    expect(parseDomState(stdout)).toBe(state);
  });
});

describe("isNoDomainError", () => {
  it.each([
    "error: failed to get domain 'x'",
    "error: failed to get domain 'budgie'\nerror: Domain not found: no domain with matching name 'budgie'",
    "error: Domain not found: no domain with matching name 'x'",
  ])("is true for %j", (stderr) => {
    expect(isNoDomainError(stderr)).toBe(true);
  });

  it.each([
    "",
    "error: Requested operation is not valid: domain is not running",
    "error: failed to connect to the hypervisor",
  ])("is false for %j", (stderr) => {
    expect(isNoDomainError(stderr)).toBe(false);
  });
});

describe("parseNodeinfo", () => {
  it("reads CPUs and memory from virsh nodeinfo", () => {
    const stdout = [
      "CPU model:           x86_64",
      "CPU(s):              2",
      "CPU frequency:       2199 MHz",
      "CPU socket(s):       1",
      "Core(s) per socket:  1",
      "Thread(s) per core:  2",
      "NUMA cell(s):        1",
      "Memory size:         24576000 KiB",
      "",
    ].join("\n");
    expect(parseNodeinfo(stdout)).toEqual({ cpus: 2, memoryMiB: 24000 });
  });

  it("floors memory to whole MiB", () => {
    expect(parseNodeinfo("CPU(s):  8\nMemory size:  2049 KiB\n")).toEqual({ cpus: 8, memoryMiB: 2 });
  });

  it("gives NaN for unreadable output", () => {
    const info = parseNodeinfo("nothing here");
    expect(Number.isNaN(info.cpus)).toBe(true);
    expect(Number.isNaN(info.memoryMiB)).toBe(true);
  });
});
