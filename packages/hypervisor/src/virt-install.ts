import type { NetworkSpec, VirtType } from "@virtfleet/core";

export interface VirtInstallDisk {
  path: string;
  format?: string;
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
  install: VirtInstallMethod;
  osVariant?: string;
  /** Empty: `--network none`. Undefined: virt-install's default (left out). */
  networks?: readonly NetworkSpec[];
  virtType?: VirtType;
  /** `--graphics none` when false. */
  graphics?: boolean;
  /** `--noautoconsole`: return once the domain has started. */
  noAutoconsole?: boolean;
  /** A serial console written to this file. */
  serialFile?: string;
  /** libvirt URI (`--connect`). */
  connect?: string;
  /** Domain metadata description (`--metadata description=…`). */
  description?: string;
  /** Extra `--xml` XPath edits, e.g. for custom metadata. */
  xmlEdits?: readonly string[];
}

/** Quotes a virt-install sub-option value that holds a comma, its option separator. */
function subValue(value: string): string {
  return value.includes(",") || value.includes(" ") ? `"${value}"` : value;
}

function networkArg(n: NetworkSpec): string {
  const head = n.type === "bridge" ? `bridge=${n.bridge}` : `network=${n.network}`;
  return n.model === undefined ? head : `${head},model=${n.model}`;
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
  if (o.disks.length === 0 && o.install.method !== "cdrom") args.push("--disk", "none");
  for (const d of o.disks) {
    args.push(
      "--disk",
      d.format === undefined ? `path=${subValue(d.path)}` : `path=${subValue(d.path)},format=${d.format}`,
    );
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
  if (o.description !== undefined) args.push("--metadata", `description=${subValue(o.description)}`);
  for (const edit of o.xmlEdits ?? []) args.push("--xml", edit);
  if (o.noAutoconsole === true) args.push("--noautoconsole");
  return args;
}
