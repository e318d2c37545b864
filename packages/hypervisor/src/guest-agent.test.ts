import { describe, expect, it } from "vitest";
import {
  agentCommands,
  isAgentNotReadyError,
  parseAgentReply,
  parseDomifaddr,
  parseDomStateReason,
  parseGuestExecReply,
  parseGuestExecStatus,
  usableAddresses,
  virsh,
} from "./virsh.js";
import { GUEST_AGENT_CHANNEL, virtInstallArgs } from "./virt-install.js";

const uri = "qemu:///system";

// `virsh domifaddr --full` as libvirt 9.0 prints it for a guest with qemu-guest-agent (addresses
// from the documentation ranges).
const AGENT_ADDRESSES = ` Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 lo         00:00:00:00:00:00    ipv4         127.0.0.1/8
 lo         00:00:00:00:00:00    ipv6         ::1/128
 enp1s0     52:54:00:6e:4e:4b    ipv4         192.0.2.10/24
 enp1s0     52:54:00:6e:4e:4b    ipv6         2001:db8::5054:ff:fe6e:4e4b/64
 enp1s0     52:54:00:6e:4e:4b    ipv6         fe80::5054:ff:fe6e:4e4b/64

`;
// Without --full virsh prints "-" for the name and MAC of an interface's further addresses.
const SHORT_FORM = ` Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 lo         00:00:00:00:00:00    ipv4         127.0.0.1/8
 -          -                    ipv6         ::1/128
 eth0       52:54:00:aa:bb:cc    ipv6         fe80::5054:ff:feaa:bbcc/64
 -          -                    ipv4         198.51.100.7/24
 eth1       52:54:00:aa:bb:cd    ipv4         169.254.3.4/16

`;
// Real: a running domain whose lease source knows nothing (no libvirt network).
const NO_LEASES = ` Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------

`;

describe("guest agent argv", () => {
  it("sends one QMP command as one argv entry, with virsh's own timeout", () => {
    expect(virsh.qemuAgentCommand(uri, "budgie", agentCommands.ping())).toEqual([
      "-c",
      uri,
      "qemu-agent-command",
      "budgie",
      '{"execute":"guest-ping"}',
      "--timeout",
      "5",
    ]);
    const exec = virsh.qemuAgentCommand(uri, "budgie", agentCommands.exec("cloud-init", ["status", "--long"]), 10);
    expect(JSON.parse(exec[4] as string)).toEqual({
      execute: "guest-exec",
      arguments: { path: "cloud-init", arg: ["status", "--long"], "capture-output": true },
    });
    expect(exec.slice(5)).toEqual(["--timeout", "10"]);
    expect(JSON.parse(virsh.qemuAgentCommand(uri, "b", agentCommands.execStatus(42))[4] as string)).toEqual({
      execute: "guest-exec-status",
      arguments: { pid: 42 },
    });
  });

  it("asks domifaddr for one source, in full form", () => {
    expect(virsh.domifaddr(uri, "budgie", "agent")).toEqual([
      "-c",
      uri,
      "domifaddr",
      "budgie",
      "--source",
      "agent",
      "--full",
    ]);
    expect(virsh.domifaddr(uri, "budgie", "lease")).toEqual([
      "-c",
      uri,
      "domifaddr",
      "budgie",
      "--source",
      "lease",
      "--full",
    ]);
    expect(virsh.domstateReason(uri, "budgie")).toEqual(["-c", uri, "domstate", "budgie", "--reason"]);
  });

  it("gives every VM an agent channel in virt-install's words", () => {
    const args = virtInstallArgs({
      name: "budgie",
      memoryMiB: 256,
      vcpus: 1,
      disks: [],
      install: { method: "import" },
      guestAgent: true,
    });
    expect(args[args.indexOf("--channel") + 1]).toBe(GUEST_AGENT_CHANNEL);
    expect(GUEST_AGENT_CHANNEL).toBe("unix,target.type=virtio,target.name=org.qemu.guest_agent.0");
    expect(
      virtInstallArgs({ name: "b", memoryMiB: 256, vcpus: 1, disks: [], install: { method: "import" } }),
    ).not.toContain("--channel");
  });
});

describe("parseDomStateReason", () => {
  it.each([
    ["running (booted)\n\n", { state: "running", reason: "booted" }],
    ["shut off (destroyed)\n", { state: "shut off", reason: "destroyed" }],
    ["shut off (shutdown)\n", { state: "shut off", reason: "shutdown" }],
    ["crashed (panicked)\n", { state: "crashed", reason: "panicked" }],
    ["paused (user)", { state: "paused", reason: "user" }],
    ["running", { state: "running", reason: "unknown" }],
  ])("%j", (stdout, expected) => {
    expect(parseDomStateReason(stdout)).toEqual(expected);
  });
});

describe("agent errors and replies", () => {
  it("knows virsh's words for an agent that is not there yet", () => {
    // Real stderr of libvirt 9.0 for a domain with the channel but no agent in the guest.
    expect(isAgentNotReadyError("error: Guest agent is not responding: QEMU guest agent is not connected\n")).toBe(
      true,
    );
    expect(isAgentNotReadyError("error: Requested operation is not valid: domain is not running")).toBe(false);
    expect(isAgentNotReadyError("error: failed to get domain 'x'")).toBe(false);
  });

  it("reads guest-ping's empty return and refuses an error reply or junk", () => {
    expect(parseAgentReply('{"return":{}}\n\n')).toEqual({});
    expect(() =>
      parseAgentReply('{"error":{"class":"CommandNotFound","desc":"The command guest-exec has not been found"}}'),
    ).toThrow(/CommandNotFound: The command guest-exec has not been found/);
    expect(() => parseAgentReply("garbage")).toThrow(/not JSON/);
    expect(() => parseAgentReply('{"id":1}')).toThrow(/unexpected/);
  });

  it("reads guest-exec's pid", () => {
    expect(parseGuestExecReply('{"return":{"pid":1234}}\n')).toBe(1234);
    expect(() => parseGuestExecReply('{"return":{}}')).toThrow(/no pid/);
  });

  it("reads guest-exec-status, running and exited, decoding its output", () => {
    expect(parseGuestExecStatus('{"return":{"exited":false}}\n')).toEqual({ exited: false });
    const out = Buffer.from("status: done\n").toString("base64");
    expect(parseGuestExecStatus(`{"return":{"exitcode":0,"out-data":"${out}","exited":true}}`)).toEqual({
      exited: true,
      exitCode: 0,
      signal: undefined,
      stdout: "status: done\n",
      stderr: "",
    });
    const err = Buffer.from("boom").toString("base64");
    expect(parseGuestExecStatus(`{"return":{"exitcode":1,"err-data":"${err}","exited":true}}`)).toMatchObject({
      exitCode: 1,
      stderr: "boom",
    });
    expect(() => parseGuestExecStatus('{"return":{"pid":3}}')).toThrow(/unexpected guest-exec-status/);
  });
});

describe("parseDomifaddr", () => {
  it("reads every row of the full form", () => {
    expect(parseDomifaddr(AGENT_ADDRESSES)).toEqual([
      { name: "lo", mac: "00:00:00:00:00:00", protocol: "ipv4", address: "127.0.0.1/8" },
      { name: "lo", mac: "00:00:00:00:00:00", protocol: "ipv6", address: "::1/128" },
      { name: "enp1s0", mac: "52:54:00:6e:4e:4b", protocol: "ipv4", address: "192.0.2.10/24" },
      { name: "enp1s0", mac: "52:54:00:6e:4e:4b", protocol: "ipv6", address: "2001:db8::5054:ff:fe6e:4e4b/64" },
      { name: "enp1s0", mac: "52:54:00:6e:4e:4b", protocol: "ipv6", address: "fe80::5054:ff:fe6e:4e4b/64" },
    ]);
  });

  it("carries the name and MAC down to the short form's '-' rows", () => {
    expect(parseDomifaddr(SHORT_FORM)[3]).toEqual({
      name: "eth0",
      mac: "52:54:00:aa:bb:cc",
      protocol: "ipv4",
      address: "198.51.100.7/24",
    });
  });

  it("gives nothing for an empty table", () => {
    expect(parseDomifaddr(NO_LEASES)).toEqual([]);
    expect(parseDomifaddr("")).toEqual([]);
  });

  it("keeps only usable addresses, IPv4 first: no loopback, no link-local", () => {
    expect(usableAddresses(parseDomifaddr(AGENT_ADDRESSES)).map((a) => a.address)).toEqual([
      "192.0.2.10/24",
      "2001:db8::5054:ff:fe6e:4e4b/64",
    ]);
    expect(usableAddresses(parseDomifaddr(SHORT_FORM)).map((a) => a.address)).toEqual(["198.51.100.7/24"]);
  });
});
