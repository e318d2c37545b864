import { rm } from "node:fs/promises";
import type { HostOrphan, Phase } from "@virtfleet/core";
import type { HostPaths } from "@virtfleet/hypervisor";
import type { Logger } from "pino";
import type { Libvirt } from "./libvirt.js";
import { judge, type Made } from "./ownership-rule.js";
import { readMarker } from "./vm-marker.js";

export interface ReconcileInput {
  /** VMs that jobs still waiting or running on this host are about. */
  liveJobVms: ReadonlySet<string>;
  /** VMs the fleet's registry places on this host. */
  knownVms: ReadonlySet<string>;
}

export interface ReconcileOptions {
  /** What the fleet accounts for; read after the host was listed, so a job that starts meanwhile is in it. */
  accounting: () => Promise<ReconcileInput>;
  /** The fleet's identity, as this worker read it at start. */
  fleetId: string;
  /** The phase the fleet records for a job, undefined when it does not know the job. */
  jobPhase: (jobId: string) => Promise<Phase | undefined>;
  /** Also remove the orphans (an operator's `hosts reconcile --delete-orphans`). Default false. */
  deleteOrphans?: boolean;
  /** Held while one VM's domain or folder is looked at and removed (the agent's per-name lock). */
  lock?: (vm: string) => Promise<() => void>;
}

export interface ReconcileReport {
  /** What was removed: proven dead (their job failed or was cancelled), or orphans when asked to. */
  removed: HostOrphan[];
  /** What nothing accounts for and nothing proves dead: reported, left alone. */
  orphans: HostOrphan[];
  /** Registry entries for VMs of this host that have no domain and no job: for the caller to drop. */
  missingVms: string[];
}

/**
 * Brings a host in line with what the fleet knows. Removes only what virtfleet made here and can
 * prove dead (see `judge`): domains whose metadata names this host and this fleet, and VM folders
 * carrying virtfleet's marker. A domain without virtfleet's metadata, or another host's, is not
 * looked at; a folder without the marker is never removed.
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

  async run(o: ReconcileOptions): Promise<ReconcileReport> {
    const opts = { timeoutMs: 30_000 };
    const report: ReconcileReport = { removed: [], orphans: [], missingVms: [] };
    const lock = o.lock ?? (async () => () => undefined);

    // What is on the host first, then what the fleet knows: whatever a job makes after the listing is
    // not looked at, and a job that ran when the host was listed is still live (or done) when read.
    const domains = await this.#libvirt.listDomains(opts);
    const dirs = await this.#paths.listVmDirs();
    const ours = new Map<string, Made>();
    const others = new Set<string>();
    for (const name of domains) {
      const owner = await this.#libvirt.ownership(name, opts);
      if (owner?.hostId === this.#hostId) ours.set(name, owner);
      else others.add(name);
    }
    const input = await o.accounting();
    const accounted = (vm: string) => input.liveJobVms.has(vm) || input.knownVms.has(vm);
    const phases = new Map<string, Phase | undefined>();
    const phaseOf = async (made: Made) => {
      if (made.fleetId !== o.fleetId) return undefined;
      if (!phases.has(made.jobId)) phases.set(made.jobId, await o.jobPhase(made.jobId));
      return phases.get(made.jobId);
    };
    const evidence = async (vm: string, made: Made) => ({
      accounted: accounted(vm),
      made,
      thisHost: this.#hostId,
      thisFleet: o.fleetId,
      jobPhase: await phaseOf(made),
    });

    for (const [name, owner] of ours) {
      const verdict = judge(await evidence(name, owner));
      if (verdict.action === "keep") continue;
      if (verdict.action === "orphan" && !o.deleteOrphans) {
        this.#logger.warn({ vm: name, reason: verdict.reason }, "reconcile: orphan domain; leaving it alone");
        report.orphans.push({ vm: name, kind: "domain", reason: verdict.reason });
        continue;
      }
      const release = await lock(name);
      try {
        // Still the same domain (a job may have replaced it while the lock was awaited)?
        const now = await this.#libvirt.ownership(name, opts);
        if (now === undefined || now.jobId !== owner.jobId || now.hostId !== this.#hostId) continue;
        this.#logger.warn({ vm: name, reason: verdict.reason }, "reconcile: removing domain");
        await this.#libvirt.stop(name, opts);
        await this.#libvirt.undefine(name, opts);
        report.removed.push({ vm: name, kind: "domain", reason: verdict.reason });
        await this.#removeFolder(name, report, verdict.reason);
      } finally {
        release();
      }
    }
    for (const name of dirs) {
      if (accounted(name) || ours.has(name) || others.has(name)) continue;
      const dir = this.#paths.vmDir(name);
      const marker = await readMarker(dir);
      if (marker === undefined) {
        const reason = "no virtfleet marker: not provably virtfleet's, never removed";
        this.#logger.warn({ vm: name, reason }, "reconcile: orphan folder; leaving it alone");
        report.orphans.push({ vm: name, kind: "folder", reason });
        continue;
      }
      const made: Made = { hostId: marker.host, fleetId: marker.fleet, jobId: marker.job };
      const verdict = judge(await evidence(name, made));
      if (verdict.action === "keep") continue;
      // A folder made for another host (a shared storage directory?) is never removed from here.
      if (verdict.action === "orphan" && (!o.deleteOrphans || marker.host !== this.#hostId)) {
        this.#logger.warn({ vm: name, reason: verdict.reason }, "reconcile: orphan folder; leaving it alone");
        report.orphans.push({ vm: name, kind: "folder", reason: verdict.reason });
        continue;
      }
      const release = await lock(name);
      try {
        if ((await this.#libvirt.state(name, opts)) !== undefined) continue; // a job made its domain meanwhile
        this.#logger.warn({ vm: name, reason: verdict.reason }, "reconcile: removing folder");
        await this.#removeFolder(name, report, verdict.reason);
      } finally {
        release();
      }
    }
    for (const vm of input.knownVms) {
      if (!ours.has(vm) && !input.liveJobVms.has(vm)) report.missingVms.push(vm);
    }
    return report;
  }

  /** Removes a VM's folder when it carries virtfleet's marker; reports it as an orphan otherwise. */
  async #removeFolder(name: string, report: ReconcileReport, reason: string): Promise<void> {
    const dir = this.#paths.vmDir(name);
    const marker = await readMarker(dir);
    if (marker === undefined) {
      if (!(await this.#paths.listVmDirs()).includes(name)) return;
      const why = "no virtfleet marker: not provably virtfleet's, never removed";
      this.#logger.warn({ vm: name, reason: why }, "reconcile: leaving the domain's folder alone");
      report.orphans.push({ vm: name, kind: "folder", reason: why });
      return;
    }
    await rm(dir, { recursive: true, force: true });
    report.removed.push({ vm: name, kind: "folder", reason });
  }
}
