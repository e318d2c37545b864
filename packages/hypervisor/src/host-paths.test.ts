import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { VirtfleetError } from "@virtfleet/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostPaths } from "./host-paths.js";

async function rejection(promise: Promise<unknown>): Promise<VirtfleetError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(VirtfleetError);
    return error as VirtfleetError;
  }
  throw new Error("expected a rejection");
}

function throwing(fn: () => unknown): VirtfleetError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(VirtfleetError);
    return error as VirtfleetError;
  }
  throw new Error("expected a throw");
}

describe("HostPaths: VM paths", () => {
  const paths = new HostPaths("/var/lib/virtfleet/vms/", "/var/lib/virtfleet/images");

  it("resolves its directories", () => {
    expect(paths.storageDir).toBe("/var/lib/virtfleet/vms");
    expect(paths.imageDir).toBe("/var/lib/virtfleet/images");
    expect(new HostPaths("rel/vms", "rel/img").storageDir).toBe(path.resolve("rel/vms"));
  });

  it("puts a VM's folder, disks and console inside the storage dir", () => {
    expect(paths.vmDir("budgie")).toBe("/var/lib/virtfleet/vms/budgie");
    expect(paths.diskPath("budgie", 0, "raw")).toBe("/var/lib/virtfleet/vms/budgie/disk0.raw");
    expect(paths.diskPath("budgie", 2, "qcow2")).toBe("/var/lib/virtfleet/vms/budgie/disk2.qcow2");
    expect(paths.consolePath("budgie")).toBe("/var/lib/virtfleet/vms/budgie/console.log");
  });

  it.each(["../x", "a/b", "", ".", "..", "/etc", "Budgie"])("vmDir rejects %j with INVALID_SPEC", (name) => {
    const error = throwing(() => paths.vmDir(name));
    expect(error.code).toBe("INVALID_SPEC");
    expect(error.field).toBe("name");
  });

  it("diskPath and consolePath reject a bad name too", () => {
    expect(throwing(() => paths.diskPath("../x", 0, "raw")).code).toBe("INVALID_SPEC");
    expect(throwing(() => paths.consolePath("a/b")).code).toBe("INVALID_SPEC");
  });
});

describe("HostPaths: image store", () => {
  let root: string;
  let paths: HostPaths;
  let imageDir: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), "virtfleet-host-paths-"));
    imageDir = path.join(root, "images");
    const storageDir = path.join(root, "vms");
    await mkdir(imageDir);
    await mkdir(storageDir);
    await mkdir(path.join(storageDir, "vm-a"));
    await mkdir(path.join(storageDir, "Not_A_Vm"));
    await writeFile(path.join(storageDir, "stray-file"), "");
    for (const f of [
      "ubuntu.iso",
      "tiny.vmlinuz",
      "tiny.initrd",
      "deb.qcow2",
      "exact.img",
      "both",
      "both.iso",
      ".hidden",
    ]) {
      await writeFile(path.join(imageDir, f), "x");
    }
    await mkdir(path.join(imageDir, "adir.iso"));
    await symlink(path.join(imageDir, "deb.qcow2"), path.join(imageDir, "link.qcow2"));
    // Outside the store, next to it: must never be found through the store.
    await writeFile(path.join(root, "secret"), "x");
    paths = new HostPaths(storageDir, imageDir);
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("finds an image by its exact name", async () => {
    expect(await paths.resolveImage("ubuntu.iso", "cdrom")).toBe(path.join(imageDir, "ubuntu.iso"));
    expect(await paths.resolveImage("deb.qcow2", "backing")).toBe(path.join(imageDir, "deb.qcow2"));
  });

  it("finds an image by its name without the suffix of its kind", async () => {
    expect(await paths.resolveImage("tiny", "kernel")).toBe(path.join(imageDir, "tiny.vmlinuz"));
    expect(await paths.resolveImage("tiny", "initrd")).toBe(path.join(imageDir, "tiny.initrd"));
    expect(await paths.resolveImage("deb", "backing")).toBe(path.join(imageDir, "deb.qcow2"));
    expect(await paths.resolveImage("ubuntu", "cdrom")).toBe(path.join(imageDir, "ubuntu.iso"));
  });

  it("prefers the exact name over a suffixed one", async () => {
    expect(await paths.resolveImage("both", "cdrom")).toBe(path.join(imageDir, "both"));
  });

  it("follows a symlink in the store", async () => {
    expect(await paths.resolveImage("link", "backing")).toBe(path.join(imageDir, "link.qcow2"));
  });

  it("does not find a suffix of another kind", async () => {
    const error = await rejection(paths.resolveImage("tiny", "cdrom", "spec.install.image"));
    expect(error.code).toBe("IMAGE_NOT_FOUND");
    expect(error.field).toBe("spec.install.image");
  });

  it("does not take a directory for an image", async () => {
    expect((await rejection(paths.resolveImage("adir", "cdrom"))).code).toBe("IMAGE_NOT_FOUND");
  });

  it("gives IMAGE_NOT_FOUND with the field for a missing image", async () => {
    const error = await rejection(paths.resolveImage("missing", "backing", "spec.disks.0.backing"));
    expect(error.code).toBe("IMAGE_NOT_FOUND");
    expect(error.field).toBe("spec.disks.0.backing");
    expect(error.retryable).toBe(false);
    expect(error.message).toContain("missing");
  });

  it("defaults the field to image", async () => {
    expect((await rejection(paths.resolveImage("missing", "kernel"))).field).toBe("image");
  });

  it.each(["../etc/passwd", "../secret", "/etc/passwd", "a/b", "..", ".hidden", ""])(
    "rejects %j with INVALID_SPEC",
    async (name) => {
      const error = await rejection(paths.resolveImage(name, "cdrom", "spec.install.image"));
      expect(error.code).toBe("INVALID_SPEC");
      expect(error.field).toBe("spec.install.image");
    },
  );

  it("lists the image files, sorted, without dot files or folders", async () => {
    expect(await paths.listImages()).toEqual([
      "both",
      "both.iso",
      "deb.qcow2",
      "exact.img",
      "link.qcow2",
      "tiny.initrd",
      "tiny.vmlinuz",
      "ubuntu.iso",
    ]);
  });

  it("lists VM folders with valid names only", async () => {
    expect(await paths.listVmDirs()).toEqual(["vm-a"]);
  });

  it("lists nothing when the directories are missing", async () => {
    const gone = new HostPaths(path.join(root, "no-vms"), path.join(root, "no-images"));
    expect(await gone.listImages()).toEqual([]);
    expect(await gone.listVmDirs()).toEqual([]);
  });
});
