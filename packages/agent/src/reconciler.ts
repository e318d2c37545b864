import { rm } from "node:fs/promises";
import type { HostPaths } from "@virtfleet/hypervisor";
import type { Logger } from "pino";
import type { Libvirt } from "./libvirt.js";

export interface ReconcileInput {
  /** VMs that jobs still waiting or running on this host are about. */
  liveJobVms: ReadonlySet<string>;
  /** VMs the fleet's registry places on this host. */
  knownVms: ReadonlySet<string>;
}

export interface ReconcileReport {
  /** virtfleet domains of this host that no job or registry entry accounts for: stopped and undefined. */
  orphanDomains: string[];
  /** VM folders with no domain and nothing that accounts for them: removed. */
  orphanDirs: string[];
  /** Registry entries for VMs of this host that have no domain and no job: for the caller to drop. */
  missingVms: string[];
}

/**
 * Brings a host in line with what the fleet knows: whatever virtfleet made on this host that no live
 * job and no known VM accounts for is reported and removed. Touches only domains whose virtfleet
 * metadata names this host, and folders in this host's storage directory.
 */
export class Reconciler {
  readonly #libvirt: Libvirt;
  readonly #paths: HostPaths;
  readonly #hostId: string;
  readonly #logger: Logger;

  constructor(libvirt: Libvirt, paths: HostPaths, hostId: string, logger: Logger) {
    this.#libvirt = libvirt;
    this.#paths = paths;
    this.#hostId = hostId;
    this.#logger = logger;
  }

  async run(input: ReconcileInput): Promise<ReconcileReport> {
    const opts = { timeoutMs: 30_000 };
    const accounted = (vm: string) => input.liveJobVms.has(vm) || input.knownVms.has(vm);
    const report: ReconcileReport = { orphanDomains: [], orphanDirs: [], missingVms: [] };

    const domains = await this.#libvirt.listDomains(opts);
    const ours = new Set<string>();
    const others = new Set<string>();
    for (const name of domains) {
      const owner = await this.#libvirt.ownership(name, opts);
      if (owner?.hostId === this.#hostId) ours.add(name);
      else others.add(name);
    }
    for (const name of ours) {
      if (accounted(name)) continue;
      this.#logger.warn({ vm: name }, "reconcile: orphan domain of this host; removing");
      await this.#libvirt.stop(name, opts);
      await this.#libvirt.undefine(name, opts);
      await rm(this.#paths.vmDir(name), { recursive: true, force: true });
      report.orphanDomains.push(name);
    }
    for (const name of await this.#paths.listVmDirs()) {
      if (accounted(name) || ours.has(name) || others.has(name)) continue;
      this.#logger.warn({ vm: name }, "reconcile: orphan VM folder; removing");
      await rm(this.#paths.vmDir(name), { recursive: true, force: true });
      report.orphanDirs.push(name);
    }
    for (const vm of input.knownVms) {
      if (!ours.has(vm) && !input.liveJobVms.has(vm)) report.missingVms.push(vm);
    }
    return report;
  }
}
