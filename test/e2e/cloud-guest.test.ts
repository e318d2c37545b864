import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  forceClean,
  runCli,
  startWorker,
  virsh,
  type WorkerProcess,
} from "./harness.js";

const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("cloudImageDir"),
  testRoot: inject("testRoot"),
};
const env = cliEnv(fleet);
const run = promisify(execFile);
const BUILD_SCRIPT = path.resolve(import.meta.dirname, "../../deploy/build-cloud-guest.sh");
/** What cloud-init prints on the console when its last stage is done ("Cloud-init v. 22.4.2 finished at …"). */
const CLOUD_INIT_DONE = "finished at";
/** A Debian boot under TCG takes about a minute on an idle 2-core host, several on a busy one. */
const READY_TIMEOUT_SEC = 900;
const name = `cg-${randomUUID().slice(0, 8)}`;
let worker: WorkerProcess;

beforeAll(async () => {
  worker = await startWorker(fleet);
});

afterAll(async () => {
  await worker?.stop();
  if ((await domainState(name)) !== undefined) {
    await virsh(["destroy", name]);
    await virsh(["undefine", name, "--nvram"]);
  }
  await forceClean([worker.storageDir]);
});

/** Runs a qemu-guest-agent command on the domain; its parsed answer. */
async function agent(command: Record<string, unknown>): Promise<unknown> {
  const r = await virsh(["qemu-agent-command", name, JSON.stringify(command)]);
  if (r.code !== 0) throw new Error(`qemu-agent-command failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe("the Debian 12 cloud guest (deploy/build-cloud-guest.sh)", () => {
  it("is in the image store, root-owned 0644 in a 0755 folder, and cached", async () => {
    expect((await stat(fleet.imageDir)).mode & 0o777).toBe(0o755);
    for (const f of ["debian12.qcow2", "debian12.vmlinuz", "debian12.initrd"]) {
      const s = await stat(path.join(fleet.imageDir, f));
      expect({ f, uid: s.uid, mode: s.mode & 0o777 }).toEqual({ f, uid: 0, mode: 0o644 });
    }
    // A second run finds the images up to date (the stamp holds the script's sha256) and builds nothing.
    const { stdout } = await run("bash", [BUILD_SCRIPT, fleet.imageDir]);
    expect(stdout).toContain("debian12 up to date");
  });

  it(
    "boots through virtfleet to cloud-init's last stage, answers on the guest agent, and destroy leaves nothing",
    async () => {
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
          CLOUD_INIT_DONE,
          "--ready-timeout",
          String(READY_TIMEOUT_SEC),
        ],
        env,
        (READY_TIMEOUT_SEC + 120) * 1000,
      );
      expect(created.code, created.stdout + created.stderr + worker.logs()).toBe(0);
      expect(created.stdout).toContain("guest.ready");
      expect(await domainState(name)).toBe("running");

      const dir = path.join(worker.storageDir, name);
      const console = await readFile(path.join(dir, "console.log"), "utf8");
      // Without a seed, NoCloud finds nothing and cloud-init finishes with the None datasource.
      expect(console).toMatch(/Cloud-init v\. \S+ finished at .*Datasource DataSourceNone/);
      expect(console).not.toMatch(/Failed to start|emergency mode/);

      // Every VM has the guest agent's virtio-serial channel; the image's agent answers on it.
      expect((await virsh(["dumpxml", name])).stdout).toContain("org.qemu.guest_agent.0");
      expect(await agent({ execute: "guest-ping" })).toEqual({ return: {} });

      const destroyed = await runCli(["destroy", name, "--wait"], env);
      expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
      expect(await domainState(name)).toBeUndefined();
      expect(await filesIn(dir)).toEqual([]);
    },
    (READY_TIMEOUT_SEC + 300) * 1000,
  );
});
