import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { FleetClient } from "@virtfleet/fleet";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  jobPhase,
  jsonLines,
  runCli,
  startWorker,
  tinySpec,
  until,
  virsh,
  type WorkerProcess,
} from "./harness.js";

// "Ready" by strategy, with a real worker and the `tiny` guest, which has NO guest agent: the console
// strategy still works, the agent ones fail saying where they were stuck, and a guest that powers off
// while waited on fails at once with libvirt's reason.

const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
const env = cliEnv(fleet);
let worker: WorkerProcess;

/**
 * This suite's VM names: `ry-…`, not the harness's `vft-…`, since other suites running on the same
 * host at the same time remove every `vft-` domain they find after each test.
 */
function ryName(tag: string): string {
  return `ry-${tag}-${randomUUID().slice(0, 8)}`;
}

/** This suite's domains still defined. */
async function ours(): Promise<string[]> {
  return (await virsh(["list", "--all", "--name"])).stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("ry-"));
}

function tinyFlags(kernelArgs = "console=ttyS0"): string[] {
  return [
    "--memory",
    "192",
    "--disk",
    "size=1,backing=tiny",
    "--boot",
    `kernel=tiny,initrd=tiny,kernel_args=${kernelArgs}`,
    "--network",
    "none",
    "--virt-type",
    "qemu",
  ];
}

interface Event {
  phase: string;
  message: string;
  addresses?: string[];
  error?: { code: string; message: string };
}

beforeAll(async () => {
  worker = await startWorker(fleet);
});

afterAll(async () => {
  await worker?.stop();
  for (const d of await ours()) {
    await virsh(["destroy", d]);
    await virsh(["undefine", d, "--nvram"]);
  }
  await rm(worker.storageDir, { recursive: true, force: true });
});

// Nothing is left behind: no domain, no file.
afterEach(async () => {
  const left = await ours();
  const files = await filesIn(worker.storageDir);
  if (left.length + files.length > 0) {
    for (const d of left) {
      await virsh(["destroy", d]);
      await virsh(["undefine", d, "--nvram"]);
    }
  }
  expect({ domains: left, files }).toEqual({ domains: [], files: [] });
});

describe("--wait-ready STRATEGY with a real worker", () => {
  it("console still works, every VM gets a guest agent channel, and ls lists its addresses", async () => {
    const name = ryName("con");
    const created = await runCli(
      ["create", "--name", name, ...tinyFlags(), "--wait", "--wait-ready", "console", "--json"],
      env,
    );
    expect(created.code, created.stdout + created.stderr + worker.logs()).toBe(0);
    const events = jsonLines(created.stdout) as unknown as Event[];
    const ready = events.find((e) => e.phase === "guest.ready");
    expect(ready?.message).toBe('guest printed "VIRTFLEET_READY"');
    // The tiny guest has no agent and no network: it has no address to report.
    expect(ready?.addresses).toEqual([]);
    expect(events.at(-1)?.phase).toBe("done");

    const xml = (await virsh(["dumpxml", name])).stdout;
    expect(xml).toMatch(/<channel type=["']unix["']>/);
    expect(xml).toMatch(/<target type=["']virtio["'] name=["']org\.qemu\.guest_agent\.0["']/);

    const ls = await runCli(["ls", "--json"], env);
    expect(JSON.parse(ls.stdout)).toEqual([expect.objectContaining({ name, state: "running", addresses: [] })]);
    const table = await runCli(["ls"], env);
    expect(table.stdout.split("\n")[0]).toMatch(/ADDRESSES$/);

    const destroyed = await runCli(["destroy", name, "--wait", "--json"], env);
    expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
  });

  it("agent fails GUEST_TIMEOUT saying it waited for the guest agent, and rolls the VM back", async () => {
    const name = ryName("agt");
    const r = await runCli(
      ["create", "--name", name, ...tinyFlags(), "--wait", "--wait-ready", "agent", "--ready-timeout", "8", "--json"],
      env,
    );
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const last = jsonLines(r.stdout).at(-1) as unknown as Event;
    expect(last.phase).toBe("failed");
    expect(last.error?.code).toBe("GUEST_TIMEOUT");
    expect(last.error?.message).toMatch(/not ready \(agent\) within 8 s: waiting for the guest agent/);
    expect(await domainState(name)).toBeUndefined();
    expect(JSON.parse((await runCli(["ls", "--json"], env)).stdout)).toEqual([]);
  });

  it("a guest that powers off while waited on fails at once with libvirt's reason, not at the timeout", async () => {
    const name = ryName("off");
    // The tiny guest's init powers off after its ready line when the kernel command line says so. The
    // wait's timeout (1500 s) is far beyond the CLI's 150 s: only a prompt failure ends this in time.
    const r = await runCli(
      [
        "create",
        "--name",
        name,
        ...tinyFlags("console=ttyS0 virtfleet.poweroff"),
        "--wait",
        "--wait-ready",
        "ip",
        "--ready-timeout",
        "1500",
        "--json",
      ],
      env,
    );
    expect(r.code, r.stdout + r.stderr + worker.logs()).toBe(1);
    const last = jsonLines(r.stdout).at(-1) as unknown as Event;
    expect(last.phase).toBe("failed");
    expect(last.error?.code).toBe("GUEST_FAILED");
    expect(last.error?.message).toMatch(
      /is shut off \(shutdown\) while waiting for ip; last: waiting for the guest agent/,
    );
    expect(await domainState(name)).toBeUndefined();
  });

  it("a guest destroyed from outside while waited on fails at once, saying so", async () => {
    const name = ryName("dst");
    const c = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
    try {
      const job = await c.createVm(tinySpec(name), { guestReady: { strategy: "agent", timeoutSec: 1500 } });
      // Once the domain runs (the worker then waits for its agent), stop it from outside.
      await until("the domain to run", async () =>
        (await jobPhase(c, job.id)) === "domain.running" ? true : undefined,
      );
      await virsh(["destroy", name]);
      // Far within the wait's 1500 s: only a prompt failure ends it in time.
      const end = await job.wait({ timeoutMs: 120_000 });
      expect(end.phase, worker.logs()).toBe("failed");
      expect(end.error?.code).toBe("GUEST_FAILED");
      expect(end.error?.message).toMatch(/is shut off \(destroyed\) while waiting for agent/);
      expect(await domainState(name)).toBeUndefined();
    } finally {
      await c.close();
    }
  });
});
