import type { NetworkSpec, VirtType } from "@virtfleet/core";

export interface VirtInstallDisk {
  path: string;
  format?: string;
}

/**
 * How disks are given to virt-install. `path` is virt-install's own `--disk path=…`, which also
 * defines a persistent storage pool over any folder that is in none (one per VM folder, never
 * removed). `xml` writes each `<disk>` element with `--xml` XPath edits instead: no pool is made.
 */
export type DiskMode = "path" | "xml";

/** `--xml` edits for the file-backed virtio disk `index` (0-based), after `before` other `<disk>` elements. */
export function diskXmlEdits(disk: VirtInstallDisk, index: number, before = 0): string[] {
  const at = `./devices/disk[${index + before + 1}]`;
  const dev = `vd${String.fromCharCode(97 + index)}`;
  return [
    `${at}/@type=file`,
    `${at}/@device=disk`,
    `${at}/driver/@name=qemu`,
    `${at}/driver/@type=${disk.format ?? "raw"}`,
    `${at}/source/@file=${disk.path}`,
    `${at}/target/@dev=${dev}`,
    `${at}/target/@bus=virtio`,
  ];
}

/**
 * `--xml` edits for a read-only virtio disk (a raw image file, e.g. a cloud-init `cidata` seed ISO) as
 * `vd<letter>` (`target` 0-based, after the data disks), written as the `<disk>` element after
 * `before` others. Virtio rather than a SATA cdrom: cloud kernels (Debian's linux-image-cloud-amd64)
 * have no AHCI driver, so a SATA cdrom is invisible to the guest and cloud-init finds no seed.
 */
export function readonlyDiskXmlEdits(path: string, target: number, before: number): string[] {
  const at = `./devices/disk[${before + 1}]`;
  return [
    `${at}/@type=file`,
    `${at}/@device=disk`,
    `${at}/driver/@name=qemu`,
    `${at}/driver/@type=raw`,
    `${at}/source/@file=${path}`,
    `${at}/target/@dev=vd${String.fromCharCode(97 + target)}`,
    `${at}/target/@bus=virtio`,
    `xpath.create=${at}/readonly`,
  ];
}

export type VirtInstallMethod =
  | { method: "import" }
  | { method: "cdrom"; path: string }
  | { method: "kernel"; kernelPath: string; initrdPath?: string; kernelArgs?: string };

/** Everything virt-install needs, with every image already resolved to a path inside the host's stores. */
export interface VirtInstallOptions {
  name: string;
  memoryMiB: number;
  vcpus: number;
  disks: readonly VirtInstallDisk[];
  /** Default `path`. */
  diskMode?: DiskMode;
  /** Read-only images attached as virtio disks after the data disks (e.g. a cloud-init seed), as `--xml` edits. */
  readonlyDisks?: readonly string[];
  install: VirtInstallMethod;
  osVariant?: string;
  /** Empty: `--network none`. Undefined: virt-install's default (left out). */
  networks?: readonly NetworkSpec[];
  virtType?: VirtType;
  /** `--graphics none` when false. */
  graphics?: boolean;
  /** `--noautoconsole`: return once the domain has started. */
  noAutoconsole?: boolean;
  /**
   * A virtio-serial channel for the qemu-guest-agent (`org.qemu.guest_agent.0`), so `virsh
   * qemu-agent-command` and `domifaddr --source agent` can reach an agent in the guest.
   */
  guestAgent?: boolean;
  /** A serial console written to this file. */
  serialFile?: string;
  /** libvirt URI (`--connect`). */
  connect?: string;
  /** Domain metadata description (`--metadata description=…`). */
  description?: string;
  /** Extra `--xml` XPath edits, e.g. for custom metadata. */
  xmlEdits?: readonly string[];
  /**
   * Run QEMU as exactly this uid:gid and let libvirt change the owner of no file (a static DAC
   * seclabel with `relabel=no`): shared images stay as they are, the caller gives the VM's own files
   * to this user. Undefined: libvirt's default (dynamic ownership: it chowns every file the VM uses).
   */
  runAs?: { uid: number; gid: number };
}

/** virt-install's `--channel` for the qemu-guest-agent: libvirt picks the host-side socket's path. */
export const GUEST_AGENT_CHANNEL = "unix,target.type=virtio,target.name=org.qemu.guest_agent.0";

/** Quotes a virt-install sub-option value that holds a comma, its option separator. */
function subValue(value: string): string {
  return value.includes(",") || value.includes(" ") ? `"${value}"` : value;
}

function networkArg(n: NetworkSpec): string {
  const parts = [n.type === "bridge" ? `bridge=${n.bridge}` : `network=${n.network}`];
  if (n.model !== undefined) parts.push(`model=${n.model}`);
  if (n.mac !== undefined) parts.push(`mac=${n.mac}`);
  return parts.join(",");
}

/**
 * argv for `virt-install`. With only the seed recipe's fields it gives back the seed recipe:
 * `--name=budgie --ram=2048 --vcpus=1 --disk path=vol.raw --cdrom=ubuntu.iso --os-variant ubuntu18.04
 *  --network bridge=virbr0,model=virtio`.
 */
export function virtInstallArgs(o: VirtInstallOptions): string[] {
  const args: string[] = [];
  if (o.connect !== undefined) args.push("--connect", o.connect);
  args.push(`--name=${o.name}`, `--ram=${o.memoryMiB}`, `--vcpus=${o.vcpus}`);
  if (o.virtType !== undefined) args.push("--virt-type", o.virtType);
  const xmlDisks = o.diskMode === "xml";
  if (o.disks.length === 0 || xmlDisks) args.push("--disk", "none");
  if (!xmlDisks) {
    for (const d of o.disks) {
      args.push(
        "--disk",
        d.format === undefined ? `path=${subValue(d.path)}` : `path=${subValue(d.path)},format=${d.format}`,
      );
    }
  }
  switch (o.install.method) {
    case "import":
      args.push("--import");
      break;
    case "cdrom":
      args.push(`--cdrom=${o.install.path}`);
      break;
    case "kernel": {
      const parts = [`kernel=${subValue(o.install.kernelPath)}`];
      if (o.install.initrdPath !== undefined) parts.push(`initrd=${subValue(o.install.initrdPath)}`);
      if (o.install.kernelArgs !== undefined && o.install.kernelArgs !== "") {
        parts.push(`kernel_args="${o.install.kernelArgs}"`);
      }
      // Direct kernel boot: the domain boots the kernel every time, no installer run.
      args.push("--import", "--boot", parts.join(","));
      break;
    }
  }
  if (o.osVariant !== undefined) args.push("--os-variant", o.osVariant);
  if (o.networks !== undefined) {
    if (o.networks.length === 0) args.push("--network", "none");
    for (const n of o.networks) args.push("--network", networkArg(n));
  }
  if (o.graphics === false) args.push("--graphics", "none");
  if (o.serialFile !== undefined) args.push("--serial", `file,path=${subValue(o.serialFile)}`);
  if (o.guestAgent === true) args.push("--channel", GUEST_AGENT_CHANNEL);
  if (o.description !== undefined) args.push("--metadata", `description=${subValue(o.description)}`);
  if (o.runAs !== undefined) {
    args.push("--seclabel", `type=static,model=dac,label=+${o.runAs.uid}:+${o.runAs.gid},relabel=no`);
  }
  // virt-install's own cdrom is the first <disk> element; data disks come after it.
  const first = o.install.method === "cdrom" ? 1 : 0;
  // Read-only disks come after every data disk (and after an install cdrom's <disk>).
  const readonly = (o.readonlyDisks ?? []).flatMap((p, i) =>
    readonlyDiskXmlEdits(p, o.disks.length + i, first + o.disks.length + i),
  );
  const edits = [
    ...(xmlDisks ? o.disks.flatMap((d, i) => diskXmlEdits(d, i, first)) : []),
    ...readonly,
    ...(o.xmlEdits ?? []),
  ];
  for (const edit of edits) args.push("--xml", edit);
  if (o.noAutoconsole === true) args.push("--noautoconsole");
  return args;
}
