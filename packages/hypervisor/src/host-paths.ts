import { constants } from "node:fs";
import { access, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { type DiskFormat, ImageName, parseOrThrow, VirtfleetError, VmName } from "@virtfleet/core";

export type ImageKind = "cdrom" | "backing" | "kernel" | "initrd";

/** Suffixes tried, in order, when an image is named without one. */
const SUFFIXES: Readonly<Record<ImageKind, readonly string[]>> = {
  cdrom: ["", ".iso"],
  backing: ["", ".qcow2", ".img", ".raw"],
  kernel: ["", ".vmlinuz", ".kernel"],
  initrd: ["", ".initrd", ".img"],
};

/** Keeps `child` inside `root`, or throws. */
function inside(root: string, child: string): string {
  const resolved = path.resolve(root, child);
  if (resolved !== root && !resolved.startsWith(root + path.sep)) {
    throw new VirtfleetError("INVALID_SPEC", `path escapes ${root}: ${child}`);
  }
  return resolved;
}

/**
 * Where a host keeps VMs and images. Every VM's files live in `storageDir/<name>/`;
 * images are plain file names in `imageDir`. Nothing resolves outside them.
 */
export class HostPaths {
  readonly storageDir: string;
  readonly imageDir: string;

  constructor(storageDir: string, imageDir: string) {
    this.storageDir = path.resolve(storageDir);
    this.imageDir = path.resolve(imageDir);
  }

  vmDir(name: string): string {
    return inside(this.storageDir, parseOrThrow(VmName, name, "name"));
  }

  diskPath(name: string, index: number, format: DiskFormat): string {
    return path.join(this.vmDir(name), `disk${index}.${format}`);
  }

  consolePath(name: string): string {
    return path.join(this.vmDir(name), "console.log");
  }

  /** The path of a named image of this kind, or IMAGE_NOT_FOUND. */
  async resolveImage(name: string, kind: ImageKind, field = "image"): Promise<string> {
    const image = parseOrThrow(ImageName, name, field);
    for (const suffix of SUFFIXES[kind]) {
      const candidate = inside(this.imageDir, image + suffix);
      try {
        await access(candidate, constants.R_OK);
        if ((await stat(candidate)).isFile()) return candidate;
      } catch {
        // try the next suffix
      }
    }
    throw new VirtfleetError("IMAGE_NOT_FOUND", `no ${kind} image "${image}" in the image store ${this.imageDir}`, {
      field,
    });
  }

  /** The file names in the image store. */
  async listImages(): Promise<string[]> {
    try {
      const entries = await readdir(this.imageDir, { withFileTypes: true });
      return entries
        .filter((e) => (e.isFile() || e.isSymbolicLink()) && ImageName.safeParse(e.name).success)
        .map((e) => e.name)
        .sort();
    } catch {
      return [];
    }
  }

  /** Names of the VM folders in the storage directory. */
  async listVmDirs(): Promise<string[]> {
    try {
      const entries = await readdir(this.storageDir, { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && VmName.safeParse(e.name).success).map((e) => e.name);
    } catch {
      return [];
    }
  }
}
