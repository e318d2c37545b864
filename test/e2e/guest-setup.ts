import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    imageDir: string;
    testRoot: string;
  }
}

const repo = path.resolve(import.meta.dirname, "../..");

/**
 * End-to-end tests need libvirtd (deploy/host-setup.sh starts it) and the `tiny` test guest, built
 * here into an image store that QEMU (running as libvirt-qemu) can read.
 */
export default function setup(project: TestProject) {
  const root = process.env.VIRTFLEET_TEST_ROOT ?? "/var/lib/virtfleet/test";
  const imageDir = path.join(root, "images");
  mkdirSync(root, { recursive: true, mode: 0o755 });
  try {
    execFileSync("virsh", ["-c", "qemu:///system", "version"], { stdio: "pipe", timeout: 15_000 });
  } catch (error) {
    throw new Error(
      `libvirtd does not answer at qemu:///system: run deploy/host-setup.sh first (${(error as Error).message})`,
    );
  }
  execFileSync("bash", [path.join(repo, "deploy/build-test-guest.sh"), imageDir], {
    stdio: "inherit",
    timeout: 120_000,
  });
  project.provide("imageDir", imageDir);
  project.provide("testRoot", root);
}
