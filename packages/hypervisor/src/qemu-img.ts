import { DiskFormat, VirtfleetError } from "@virtfleet/core";
import { z } from "zod";

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

/** What virtfleet reads of `qemu-img info --output=json` (qemu-img prints more). */
export const QemuImgInfo = z.object({
  format: z.string().min(1),
  "virtual-size": z.number().int().nonnegative(),
  "actual-size": z.number().int().nonnegative().optional(),
  "backing-filename": z.string().optional(),
  "backing-filename-format": z.string().optional(),
});
export type QemuImgInfo = z.infer<typeof QemuImgInfo>;

/**
 * Parses the stdout of `qemu-img info --output=json`; a file qemu-img cannot describe is COMMAND_FAILED
 * naming `path`. The file's format is read from its header by qemu-img, never the whole file.
 */
export function parseQemuImgInfo(stdout: string, path: string): QemuImgInfo {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (error) {
    throw new VirtfleetError("COMMAND_FAILED", `qemu-img info ${path}: output is not JSON`, { cause: error });
  }
  const parsed = QemuImgInfo.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new VirtfleetError(
      "COMMAND_FAILED",
      `qemu-img info ${path}: unexpected output (${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"})`,
    );
  }
  return parsed.data;
}

/** The image's format when a disk can be cloned from it (qcow2 or raw), else INVALID_SPEC naming `field`. */
export function backingFormat(info: QemuImgInfo, path: string, field: string): DiskFormat {
  const format = DiskFormat.safeParse(info.format);
  if (format.success) return format.data;
  throw new VirtfleetError(
    "INVALID_SPEC",
    `image ${path} is ${info.format}; only ${DiskFormat.options.join(" and ")} images can back a disk`,
    { field },
  );
}
