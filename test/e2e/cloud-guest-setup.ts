import { execFileSync } from "node:child_process";
import path from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** The image store holding the Debian 12 cloud guest (debian12.qcow2, .vmlinuz, .initrd). */
    cloudImageDir: string;
  }
}

const repo = path.resolve(import.meta.dirname, "../..");
/** The first build downloads Debian's packages (about 1–3 min); later runs find it cached. */
const BUILD_TIMEOUT_MS = 900_000;

/**
 * Builds the Debian 12 cloud guest (deploy/build-cloud-guest.sh) into the same image store as the
 * `tiny` guest (see guest-setup.ts), so the test workers find both. The script rebuilds only when
 * it changed since the last build.
 */
export default function setup(project: TestProject) {
  // guest-setup.ts runs first (vitest.config.ts lists it before this file) and provides the store.
  const { imageDir } = project.getProvidedContext();
  execFileSync("bash", [path.join(repo, "deploy/build-cloud-guest.sh"), imageDir], {
    stdio: "inherit",
    timeout: BUILD_TIMEOUT_MS,
  });
  project.provide("cloudImageDir", imageDir);
}
