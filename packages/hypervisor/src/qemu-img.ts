import type { DiskFormat } from "@virtfleet/core";

export interface QemuImgCreateOptions {
  path: string;
  format: DiskFormat;
  /** Virtual size in GiB. Optional for an overlay, which then takes the base image's size. */
  sizeGiB?: number;
  /** Absolute path of a base image: the disk becomes a qcow2 overlay on it. */
  backingPath?: string;
  backingFormat?: DiskFormat;
}

/** Formats a size in GiB the way qemu-img reads it: whole GiB as `20G`, fractions in MiB. */
export function formatSize(sizeGiB: number): string {
  if (Number.isInteger(sizeGiB)) return `${sizeGiB}G`;
  return `${Math.ceil(sizeGiB * 1024)}M`;
}

/**
 * argv for `qemu-img create`. The seed recipe
 * `qemu-img create -f raw -o size=20G vol.raw` is `qemuImgCreateArgs({ path: "vol.raw", format: "raw", sizeGiB: 20 })`.
 */
export function qemuImgCreateArgs(o: QemuImgCreateOptions): string[] {
  const args = ["create", "-f", o.format];
  if (o.backingPath !== undefined) {
    args.push("-b", o.backingPath, "-F", o.backingFormat ?? "qcow2");
  }
  if (o.sizeGiB !== undefined) args.push("-o", `size=${formatSize(o.sizeGiB)}`);
  args.push(o.path);
  return args;
}

/** argv for `qemu-img info --output=json PATH`. */
export function qemuImgInfoArgs(path: string): string[] {
  return ["info", "--output=json", "--force-share", path];
}
