import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  jsonLines,
  runCli,
  startWorker,
  virsh,
  type WorkerProcess,
} from "./harness.js";

// `--wait-ready cloud-init` with the Debian 12 cloud guest (deploy/build-cloud-guest.sh), which has
// qemu-guest-agent and cloud-init: the worker asks the agent, not the console, and cloud-init's own
// status says when the guest is done.

const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("cloudImageDir"),
  testRoot: inject("testRoot"),
};
const env = cliEnv(fleet);
/** A Debian boot under TCG takes about a minute on an idle 2-core host, several on a busy one. */
const READY_TIMEOUT_SEC = 900;
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

describe("--wait-ready cloud-init with a real cloud guest", () => {
  it(
    "is ready when the guest agent runs `cloud-init status` and it says done",
    async () => {
      const name = ryName("ci");
      const created = await runCli(
        [
          "create",
          "--name",
          name,
          "--memory",
          "768",
          "--disk",
          "size=4,backing=debian12",
          "--boot",
          "kernel=debian12,initrd=debian12,kernel_args=root=/dev/vda console=ttyS0",
          "--network",
          "none",
          "--virt-type",
          "qemu",
          "--wait",
          "--wait-ready",
          "cloud-init",
          "--ready-timeout",
          String(READY_TIMEOUT_SEC),
          "--json",
        ],
        env,
        (READY_TIMEOUT_SEC + 120) * 1000,
      );
      expect(created.code, created.stdout + created.stderr + worker.logs()).toBe(0);
      const events = jsonLines(created.stdout) as unknown as Event[];
      expect(events.find((e) => e.phase === "guest.ready")?.message).toBe("cloud-init is done");
      // The worker asked the agent: it answers now, and cloud-init is indeed done.
      expect(JSON.parse((await virsh(["qemu-agent-command", name, '{"execute":"guest-ping"}'])).stdout)).toEqual({
        return: {},
      });
      expect(worker.logs()).toContain("guest-exec-status");

      const destroyed = await runCli(["destroy", name, "--wait"], env);
      expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
      expect(await domainState(name)).toBeUndefined();
    },
    (READY_TIMEOUT_SEC + 300) * 1000,
  );
});
