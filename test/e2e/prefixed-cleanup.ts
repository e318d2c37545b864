import { rm } from "node:fs/promises";
import { virsh } from "./harness.js";

/**
 * Domains whose names start with `prefix` (a test file's own VMs: several suites may run at once on
 * one host, so a suite checks and cleans only what it named).
 */
export async function domainsNamed(prefix: string): Promise<string[]> {
  return (await virsh(["list", "--all", "--name"])).stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s.startsWith(prefix));
}

/** Removes the domains named `prefix…` and the given folders by force (after a failed assertion). */
export async function forceCleanNamed(prefix: string, dirs: string[] = []): Promise<void> {
  for (const d of await domainsNamed(prefix)) {
    await virsh(["destroy", d]);
    await virsh(["undefine", d, "--nvram"]);
  }
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}
