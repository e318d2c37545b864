import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type GuestReadyInput, GuestReadyOptions, VirtfleetError } from "@virtfleet/core";
import type { AgentCommand, DomainState, InterfaceAddress } from "@virtfleet/hypervisor";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseCloudInitStatus } from "./cloud-init.js";
import type { ReadinessLibvirt, ReadyContext } from "./probe.js";
import { waitForGuest } from "./wait.js";

/** libvirt's words when the channel is there but no agent answers (libvirt 9.0). */
const NOT_CONNECTED = "error: Guest agent is not responding: QEMU guest agent is not connected\n";

function virshError(stderr: string): VirtfleetError {
  return new VirtfleetError("COMMAND_FAILED", `virsh failed: ${stderr}`, { stderr });
}

/** A scripted domain: its state, whether its agent answers, what it reports. */
class FakeGuest implements ReadinessLibvirt {
  state: { state: DomainState; reason: string } | undefined = { state: "running", reason: "booted" };
  agentUp = false;
  agentRows: InterfaceAddress[] = [];
  leaseRows: InterfaceAddress[] = [];
  /** What `cloud-init status --long` prints, in turn (the last one repeats). */
  cloudInit: string[] = ["status: running\n"];
  /** How many `guest-exec-status` answers say "still running" before each run ends. */
  slowRuns = 0;
  calls: string[] = [];
  #polls = new Map<number, number>();
  #pending = new Map<number, string>();
  #pid = 100;

  async stateReason() {
    this.calls.push("domstate");
    return this.state;
  }

  async agentCommand(_name: string, command: AgentCommand): Promise<string> {
    this.calls.push(command.execute);
    if (this.state?.state !== "running")
      throw virshError("error: Requested operation is not valid: domain is not running");
    if (!this.agentUp) throw virshError(NOT_CONNECTED);
    switch (command.execute) {
      case "guest-ping":
        return '{"return":{}}\n';
      case "guest-exec": {
        const pid = this.#pid++;
        const out = this.cloudInit.length > 1 ? (this.cloudInit.shift() as string) : (this.cloudInit[0] as string);
        this.#pending.set(pid, out);
        return JSON.stringify({ return: { pid } });
      }
      case "guest-exec-status": {
        const pid = (command.arguments as { pid: number }).pid;
        const polls = (this.#polls.get(pid) ?? 0) + 1;
        this.#polls.set(pid, polls);
        if (polls <= this.slowRuns) return '{"return":{"exited":false}}';
        const out = this.#pending.get(pid) ?? "";
        const code = /status: error/.test(out) ? 1 : 0;
        return JSON.stringify({
          return: { exited: true, exitcode: code, "out-data": Buffer.from(out).toString("base64") },
        });
      }
      default:
        throw new Error(`unexpected ${command.execute}`);
    }
  }

  async interfaceAddresses(_name: string, source: "agent" | "lease") {
    this.calls.push(`domifaddr-${source}`);
    if (source === "agent" && !this.agentUp) throw virshError(NOT_CONNECTED);
    return source === "agent" ? this.agentRows : this.leaseRows;
  }
}

const LO: InterfaceAddress = { name: "lo", mac: "00:00:00:00:00:00", protocol: "ipv4", address: "127.0.0.1/8" };
const LINK6: InterfaceAddress = { name: "eth0", mac: "52:54:00:00:00:01", protocol: "ipv6", address: "fe80::1/64" };
const V4: InterfaceAddress = { name: "eth0", mac: "52:54:00:00:00:01", protocol: "ipv4", address: "192.0.2.10/24" };

let dir: string;
let guest: FakeGuest;
let ctx: ReadyContext;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vf-ready-"));
  guest = new FakeGuest();
  ctx = { name: "ry-guest", libvirt: guest, consolePath: path.join(dir, "console.log"), run: { timeoutMs: 5000 } };
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const wait = (o: GuestReadyInput) => waitForGuest(ctx, GuestReadyOptions.parse(o));

async function failure(p: Promise<unknown>): Promise<VirtfleetError> {
  try {
    await p;
  } catch (error) {
    expect(error).toBeInstanceOf(VirtfleetError);
    return error as VirtfleetError;
  }
  throw new Error("expected the wait to fail");
}

describe("console", () => {
  it("is ready when the console file holds the pattern", async () => {
    await writeFile(ctx.consolePath, "boot…\nREADY-42\n");
    await expect(wait({ pattern: "READY-42", timeoutSec: 5 })).resolves.toEqual({
      message: 'guest printed "READY-42"',
      addresses: [],
    });
  });

  it("times out naming the pattern it waited for", async () => {
    await writeFile(ctx.consolePath, "nothing\n");
    const e = await failure(wait({ strategy: "console", pattern: "NEVER", timeoutSec: 1 }));
    expect(e.code).toBe("GUEST_TIMEOUT");
    expect(e.message).toContain('waiting for "NEVER" on the serial console');
  });
});

describe("agent", () => {
  it("times out saying it was waiting for the guest agent", async () => {
    const e = await failure(wait({ strategy: "agent", timeoutSec: 1 }));
    expect(e.code).toBe("GUEST_TIMEOUT");
    expect(e.message).toMatch(/not ready \(agent\) within 1 s: waiting for the guest agent \(.*not connected\)/);
  });

  it("is ready when guest-ping answers, with the agent's addresses", async () => {
    guest.agentUp = true;
    guest.agentRows = [LO, LINK6, V4];
    await expect(wait({ strategy: "agent", timeoutSec: 5 })).resolves.toEqual({
      message: "guest agent answers",
      addresses: ["192.0.2.10"],
    });
  });
});

describe("ip", () => {
  it("says the agent is up but no NIC has an IPv4 address (loopback and link-local do not count)", async () => {
    guest.agentUp = true;
    guest.agentRows = [LO, LINK6];
    const e = await failure(wait({ strategy: "ip", timeoutSec: 1 }));
    expect(e.code).toBe("GUEST_TIMEOUT");
    expect(e.message).toContain("agent up, no IPv4 address on any NIC");
  });

  it("is ready with the agent's address", async () => {
    guest.agentUp = true;
    guest.agentRows = [LO, V4];
    const ready = await wait({ strategy: "ip", timeoutSec: 5 });
    expect(ready.addresses).toEqual(["192.0.2.10"]);
    expect(guest.calls).not.toContain("domifaddr-lease");
  });

  it("falls back to DHCP leases when the agent reports none", async () => {
    guest.agentUp = true;
    guest.agentRows = [LO];
    guest.leaseRows = [{ ...V4, address: "198.51.100.7/24" }];
    expect((await wait({ strategy: "ip", timeoutSec: 5 })).addresses).toEqual(["198.51.100.7"]);
  });
});

describe("cloud-init", () => {
  it("waits while it runs, ready once it says done", async () => {
    guest.agentUp = true;
    guest.cloudInit = ["status: running\n", "status: done\n"];
    await expect(wait({ strategy: "cloud-init", timeoutSec: 10 })).resolves.toMatchObject({
      message: "cloud-init is done",
    });
    expect(guest.calls.filter((c) => c === "guest-exec")).toHaveLength(2);
  });

  it("looks at a slow `cloud-init status` run again instead of starting another", async () => {
    guest.agentUp = true;
    guest.slowRuns = 2;
    guest.cloudInit = ["status: done\n"];
    await expect(wait({ strategy: "cloud-init", timeoutSec: 10 })).resolves.toMatchObject({
      message: "cloud-init is done",
    });
    expect(guest.calls.filter((c) => c === "guest-exec")).toHaveLength(1);
    expect(guest.calls.filter((c) => c === "guest-exec-status")).toHaveLength(3);
  });

  it("times out with the status it last saw", async () => {
    guest.agentUp = true;
    guest.cloudInit = ["status: running\n"];
    const e = await failure(wait({ strategy: "cloud-init", timeoutSec: 1 }));
    expect(e.code).toBe("GUEST_TIMEOUT");
    expect(e.message).toContain("cloud-init still running: status running");
  });

  it("fails at once with cloud-init's detail when it reports an error", async () => {
    guest.agentUp = true;
    guest.cloudInit = [
      "status: error\ntime: Mon, 30 Nov 2026 04:00:00 +0000\ndetail:\n('users-groups', KeyError('nobody'))\n",
    ];
    const e = await failure(wait({ strategy: "cloud-init", timeoutSec: 600 }));
    expect(e.code).toBe("GUEST_FAILED");
    expect(e.message).toContain("cloud-init status error: ('users-groups', KeyError('nobody'))");
  });

  it("reads `cloud-init status --long` in its older and newer forms", () => {
    expect(parseCloudInitStatus("status: done\ntime: x\ndetail:\nDataSourceNoCloud [seed=/dev/vdb]\n")).toEqual({
      status: "done",
      detail: "DataSourceNoCloud [seed=/dev/vdb]",
    });
    expect(
      parseCloudInitStatus(
        "status: error\nextended_status: error - done\nerrors:\n\t- oops\ndetail:\nboom\nerrors: []\n",
      ),
    ).toMatchObject({ status: "error" });
    expect(parseCloudInitStatus('status: error\nerrors: ["x failed"]\n')).toEqual({
      status: "error",
      detail: '["x failed"]',
    });
    expect(parseCloudInitStatus("\n")).toMatchObject({ status: "unknown" });
  });
});

// A wait of 600 s that ends within vitest's 5 s test timeout ended on what it saw, not at its deadline.
describe("a guest that stops while waited on", () => {
  it.each([
    [{ state: "shut off", reason: "destroyed" }, /is shut off \(destroyed\) while waiting for agent/],
    [{ state: "crashed", reason: "panicked" }, /is crashed \(panicked\) while waiting for agent/],
    [{ state: "shut off", reason: "shutdown" }, /is shut off \(shutdown\)/],
  ] as const)("fails at once with libvirt's reason: %j", async (state, message) => {
    guest.state = { ...state };
    const e = await failure(wait({ strategy: "agent", timeoutSec: 600 }));
    expect(e.code).toBe("GUEST_FAILED");
    expect(e.message).toMatch(message);
    expect(e.message).toContain("last: waiting for the guest agent");
  });

  it("fails at once when the domain is gone", async () => {
    guest.state = undefined;
    const e = await failure(wait({ strategy: "ip", timeoutSec: 600 }));
    expect(e).toMatchObject({ code: "GUEST_FAILED", message: expect.stringContaining("went away") });
  });

  it("fails when it stops after the wait began", async () => {
    setTimeout(() => {
      guest.state = { state: "shut off", reason: "destroyed" };
    }, 300);
    const e = await failure(wait({ strategy: "agent", timeoutSec: 600 }));
    expect(e.code).toBe("GUEST_FAILED");
  });

  it("stops at a cancel", async () => {
    const controller = new AbortController();
    ctx = { ...ctx, run: { signal: controller.signal } };
    setTimeout(() => controller.abort(), 200);
    const e = await failure(wait({ strategy: "agent", timeoutSec: 600 }));
    expect(e.code).toBe("CANCELLED");
  });
});
