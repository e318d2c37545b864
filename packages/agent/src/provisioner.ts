import { chmod, chown, mkdir, open, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { SEED_FILE_NAME, seedDocuments, writeSeedIso } from "@virtfleet/cloud-init";
import {
  type CreateJobData,
  type DestroyJobData,
  type DiskFormat,
  type ErrorInfo,
  type Phase,
  specFingerprint,
  VirtfleetError,
  type VirtType,
} from "@virtfleet/core";
import {
  backingFormat,
  type CommandRunner,
  type HostPaths,
  type ImageKind,
  parseQemuImgInfo,
  type QemuOwner,
  qemuAccess,
  qemuImgCreateArgs,
  qemuImgInfoArgs,
  type RunOptions,
  type VirtInstallOptions,
  virtInstallArgs,
} from "@virtfleet/hypervisor";
import type { ImageCache } from "./images/image-cache.js";
import { type Libvirt, type Ownership, ownershipXmlEdits } from "./libvirt.js";
import { type GuestReady, waitForGuest } from "./readiness/index.js";
import { readMarker, type VmMarker, writeMarker } from "./vm-marker.js";

/** What a phase's event may carry besides its message. */
export interface ReportDetail {
  /** The guest's addresses (on `guest.ready`). */
  addresses?: string[];
}

export type Report = (phase: Phase, message: string, error?: ErrorInfo, detail?: ReportDetail) => Promise<void>;

export interface ProvisionerTimeouts {
  /** `qemu-img create`. Default 60 s. */
  qemuImgMs: number;
  /** `xorrisofs`, making a cloud-init seed. Default 60 s. */
  xorrisofsMs: number;
  /** `virt-install`. Default 180 s. */
  virtInstallMs: number;
  /** Each `virsh` call. Default 30 s. */
  virshMs: number;
  /** From virt-install's return until the domain runs. Default 30 s. */
  runningMs: number;
}

export interface ProvisionerOptions {
  libvirt: Libvirt;
  runner: CommandRunner;
  paths: HostPaths;
  hostId: string;
  /** The virt type for specs that name none. */
  defaultVirtType: VirtType;
  /**
   * The ids QEMU runs as (a static DAC seclabel: libvirt chowns nothing, so shared images stay
   * root's). The VM's own files are given to them: disks and console 0600, the folder root-owned
   * 0750 with this group.
   */
  qemuOwner: Pick<QemuOwner, "uid" | "gid">;
  timeouts?: Partial<ProvisionerTimeouts>;
  /** The fleet's identity, written into each domain's metadata and each VM folder's marker. */
  fleetId: string;
  /**
   * Whether another job's leftover folder is proven dead (this fleet's, its job failed or was
   * cancelled), so a create may replace it. Default: never.
   */
  isDead?: (marker: VmMarker) => Promise<boolean>;
  /** Pulls catalogued images this host lacks before a create resolves them (see ImageCache). */
  images?: Pick<ImageCache, "ensureAll">;
}

export const DEFAULT_TIMEOUTS: ProvisionerTimeouts = {
  qemuImgMs: 60_000,
  xorrisofsMs: 60_000,
  virtInstallMs: 180_000,
  virshMs: 30_000,
  runningMs: 30_000,
};

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new VirtfleetError("CANCELLED", "cancelled");
}

/**
 * Does the work of create and destroy jobs on one host. Every step looks at what is already there
 * first, so running a job again (after a crash, or a duplicate delivery) converges instead of
 * duplicating; a create that fails removes what it made.
 */
export class Provisioner {
  readonly #o: ProvisionerOptions;
  readonly #t: ProvisionerTimeouts;

  constructor(options: ProvisionerOptions) {
    this.#o = options;
    this.#t = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  }

  async create(data: CreateJobData, report: Report, signal?: AbortSignal): Promise<void> {
    const { libvirt } = this.#o;
    const { spec } = data;
    const name = spec.name;
    const owner: Ownership = {
      fingerprint: specFingerprint(spec),
      jobId: data.jobId,
      hostId: this.#o.hostId,
      fleetId: this.#o.fleetId,
    };
    const virsh = { timeoutMs: this.#t.virshMs, ...(signal === undefined ? {} : { signal }) };

    const existing = await libvirt.state(name, virsh);
    if (existing !== undefined) {
      const found = await libvirt.ownership(name, virsh);
      if (found === undefined) {
        throw new VirtfleetError(
          "NAME_CLASH",
          `a domain named "${name}" exists on ${this.#o.hostId} and is not virtfleet's`,
          { field: "spec.name" },
        );
      }
      if (found.fingerprint !== owner.fingerprint) {
        throw new VirtfleetError("NAME_CLASH", `VM "${name}" exists on ${this.#o.hostId} with another spec`, {
          field: "spec.name",
        });
      }
      if (existing !== "running") await libvirt.start(name, virsh);
      await report("domain.running", `VM ${name} already exists; running`);
    } else {
      await this.#clearFolder(name, data.jobId);
      try {
        await this.#build(data, owner, report, signal);
      } catch (error) {
        await this.rollback(name, data.jobId).catch(() => undefined);
        throw error;
      }
    }
    if (data.guestReady !== undefined) {
      let ready: GuestReady;
      try {
        const ctx = { name, libvirt, consolePath: this.#o.paths.consolePath(name), run: virsh };
        ready = await waitForGuest(ctx, data.guestReady);
      } catch (error) {
        await this.rollback(name, data.jobId).catch(() => undefined);
        throw error;
      }
      const at = ready.addresses.length === 0 ? "" : ` (${ready.addresses.join(", ")})`;
      await report("guest.ready", `${ready.message}${at}`, undefined, { addresses: ready.addresses });
    }
  }

  async #build(data: CreateJobData, owner: Ownership, report: Report, signal?: AbortSignal): Promise<void> {
    const { libvirt, paths, runner } = this.#o;
    const { spec } = data;
    const name = spec.name;
    const run = (ms: number) => ({ timeoutMs: ms, ...(signal === undefined ? {} : { signal }) });

    await this.#o.images?.ensureAll(spec, report, signal);
    // Resolve every image before anything is made: a missing one fails at once, leaving nothing.
    const backing = await Promise.all(
      spec.disks.map(async (d, i) => {
        if (d.backing === undefined) return undefined;
        const field = `spec.disks.${i}.backing`;
        const path = await this.#image(d.backing, "backing", field);
        return { path, format: await this.#imageFormat(path, field, run) };
      }),
    );
    let install: VirtInstallOptions["install"];
    switch (spec.install.method) {
      case "import":
        install = { method: "import" };
        break;
      case "cdrom":
        install = {
          method: "cdrom",
          path: await this.#image(spec.install.image, "cdrom", "spec.install.image"),
        };
        break;
      case "kernel":
        install = {
          method: "kernel",
          kernelPath: await this.#image(spec.install.kernel, "kernel", "spec.install.kernel"),
          ...(spec.install.initrd === undefined
            ? {}
            : { initrdPath: await this.#image(spec.install.initrd, "initrd", "spec.install.initrd") }),
          ...(spec.install.kernelArgs === undefined ? {} : { kernelArgs: spec.install.kernelArgs }),
        };
        break;
    }

    await report("disk.creating", spec.disks.length === 0 ? "no disks" : `creating ${spec.disks.length} disk(s)`);
    const dir = paths.vmDir(name);
    const { uid, gid } = this.#o.qemuOwner;
    // Private to root and QEMU: QEMU's group may enter and read, nobody else; only root writes in it.
    await mkdir(dir, { recursive: true, mode: 0o750 });
    await chown(dir, 0, gid);
    await chmod(dir, 0o750);
    await writeMarker(dir, { fleet: this.#o.fleetId, host: this.#o.hostId, job: data.jobId, vm: name });
    // The console file exists before QEMU starts, QEMU's and 0600 (libvirt gives it no owner).
    await this.#ownedFile(paths.consolePath(name), uid, gid);
    const disks: VirtInstallOptions["disks"][number][] = [];
    for (const [i, disk] of spec.disks.entries()) {
      throwIfAborted(signal);
      const path = paths.diskPath(name, i, disk.format);
      const b = backing[i];
      await runner.run(
        "qemu-img",
        qemuImgCreateArgs({
          path,
          format: disk.format,
          sizeGiB: disk.sizeGiB,
          ...(b === undefined ? {} : { backingPath: b.path, backingFormat: b.format }),
        }),
        run(this.#t.qemuImgMs),
      );
      await chown(path, uid, gid);
      await chmod(path, 0o600);
      disks.push({ path, format: disk.format });
    }
    await report("disk.ready", `${disks.length} disk(s) ready`);

    // cloud-init NoCloud: a `cidata` ISO in the VM's folder (so it goes with the VM), QEMU's and 0600.
    const readonlyDisks: string[] = [];
    if (spec.cloudInit !== undefined) {
      throwIfAborted(signal);
      const seed = path.join(dir, SEED_FILE_NAME);
      await writeSeedIso({
        dir,
        output: seed,
        documents: seedDocuments(spec.cloudInit, data.jobId, name),
        xorrisofs: (args) => runner.run("xorrisofs", args, run(this.#t.xorrisofsMs)),
      });
      await chown(seed, uid, gid);
      await chmod(seed, 0o600);
      readonlyDisks.push(seed);
      await report("cloudinit.seeded", `cloud-init seed ${seed} (instance-id ${data.jobId})`);
    }

    throwIfAborted(signal);
    await report("domain.defining", "running virt-install");
    const args = virtInstallArgs({
      connect: libvirt.uri,
      name,
      memoryMiB: spec.memoryMiB,
      vcpus: spec.vcpus,
      virtType: spec.virtType ?? this.#o.defaultVirtType,
      disks,
      // Disks as XML, not `--disk path=`: virt-install would define a storage pool per VM folder.
      diskMode: "xml",
      readonlyDisks,
      install,
      osVariant: spec.osVariant,
      networks: spec.networks,
      graphics: false,
      serialFile: paths.consolePath(name),
      guestAgent: true,
      xmlEdits: ownershipXmlEdits(owner),
      // QEMU runs as the QEMU user and libvirt relabels nothing: images are never chowned to it.
      runAs: { uid, gid },
      noAutoconsole: true,
    });
    await libvirt.virtInstall(args, run(this.#t.virtInstallMs));

    const deadline = Date.now() + this.#t.runningMs;
    for (;;) {
      const state = await libvirt.state(name, run(this.#t.virshMs));
      if (state === "running") break;
      if (Date.now() > deadline) {
        throw new VirtfleetError(
          "PHASE_TIMEOUT",
          `domain ${name} is "${state ?? "gone"}", not running, ${this.#t.runningMs} ms after virt-install`,
        );
      }
      throwIfAborted(signal);
      await sleep(200, signal);
    }
    await report("domain.running", `domain ${name} is running`);
  }

  /**
   * No domain exists: a folder of the VM's name is left from an earlier, unfinished run of this job
   * (or of a job proven dead) and goes. Anything else there is not virtfleet's to remove: NAME_CLASH.
   */
  async #clearFolder(name: string, jobId: string): Promise<void> {
    const dir = this.#o.paths.vmDir(name);
    if (!(await this.#o.paths.listVmDirs()).includes(name)) return;
    const marker = await readMarker(dir);
    const empty = (await readdir(dir).catch(() => ["?"])).length === 0;
    const ours =
      empty ||
      (marker !== undefined &&
        marker.host === this.#o.hostId &&
        marker.fleet === this.#o.fleetId &&
        (marker.job === jobId || ((await this.#o.isDead?.(marker)) ?? false)));
    if (!ours) {
      throw new VirtfleetError(
        "NAME_CLASH",
        `a folder ${dir} exists on ${this.#o.hostId} that virtfleet cannot prove is a dead leftover; leaving it alone`,
        { field: "spec.name" },
      );
    }
    await rm(dir, { recursive: true, force: true });
  }

  /**
   * The path of a shared image, which QEMU must be able to read and must not be able to write (no
   * guest may change what other guests boot from); else IMAGE_NOT_FOUND naming `field`.
   */
  async #image(name: string, kind: ImageKind, field: string): Promise<string> {
    const path = await this.#o.paths.resolveImage(name, kind, field);
    const file = await stat(path);
    const can = qemuAccess(file, this.#o.qemuOwner);
    if (!can.read || can.write) {
      const mode = (file.mode & 0o7777).toString(8).padStart(4, "0");
      throw new VirtfleetError(
        "IMAGE_NOT_FOUND",
        `image ${path} (${mode}, uid ${file.uid}, gid ${file.gid}) is ${can.read ? "writable" : "not readable"} by QEMU (uid ${this.#o.qemuOwner.uid}); shared images must be root-owned and read-only for QEMU (e.g. 0644 root:root)`,
        { field },
      );
    }
    return path;
  }

  /** The base image's format as qemu-img reads it from the header (qcow2 or raw; else INVALID_SPEC). */
  async #imageFormat(path: string, field: string, run: (ms: number) => RunOptions): Promise<DiskFormat> {
    const { stdout } = await this.#o.runner.run("qemu-img", qemuImgInfoArgs(path), run(this.#t.qemuImgMs));
    return backingFormat(parseQemuImgInfo(stdout, path), path, field);
  }

  /** Creates (or truncates) an empty file owned by uid:gid, mode 0600. */
  async #ownedFile(path: string, uid: number, gid: number): Promise<void> {
    const file = await open(path, "w", 0o600);
    try {
      await file.chown(uid, gid);
      await file.chmod(0o600);
    } finally {
      await file.close();
    }
  }

  /** Removes what a create made: the domain (only when this job made it) and the VM's folder. */
  async rollback(name: string, jobId: string): Promise<void> {
    const { libvirt, paths } = this.#o;
    const opts = { timeoutMs: this.#t.virshMs };
    const state = await libvirt.state(name, opts);
    if (state !== undefined) {
      const found = await libvirt.ownership(name, opts);
      if (found?.jobId !== jobId) return; // someone else's domain: leave it and its files alone
      await libvirt.stop(name, opts);
      await libvirt.undefine(name, opts);
    }
    // Only the folder this job made (its marker names the job).
    if ((await readMarker(paths.vmDir(name)))?.job === jobId)
      await rm(paths.vmDir(name), { recursive: true, force: true });
  }

  async destroy(data: DestroyJobData, report: Report, signal?: AbortSignal): Promise<void> {
    const { libvirt, paths } = this.#o;
    const name = data.name;
    const opts = { timeoutMs: this.#t.virshMs, ...(signal === undefined ? {} : { signal }) };
    const state = await libvirt.state(name, opts);
    if (state !== undefined) {
      const found = await libvirt.ownership(name, opts);
      if (found === undefined) {
        throw new VirtfleetError(
          "NAME_CLASH",
          `domain "${name}" on ${this.#o.hostId} is not virtfleet's; leaving it alone`,
          { field: "name" },
        );
      }
      await report("stopping", state === "running" ? `stopping ${name}` : `${name} is ${state}`);
      await libvirt.stop(name, opts);
      await libvirt.undefine(name, opts);
      await report("domain.undefined", `domain ${name} undefined`);
    } else {
      await report("stopping", `no domain ${name} on ${this.#o.hostId}`);
      await report("domain.undefined", "nothing to undefine");
    }
    const dir = paths.vmDir(name);
    if ((await readMarker(dir)) !== undefined) {
      await rm(dir, { recursive: true, force: true });
      await report("storage.removed", `removed ${dir}`);
    } else if ((await paths.listVmDirs()).includes(name)) {
      await report("storage.removed", `left ${dir} alone: it has no virtfleet marker`);
    } else {
      await report("storage.removed", `no folder ${dir}`);
    }
  }
}
