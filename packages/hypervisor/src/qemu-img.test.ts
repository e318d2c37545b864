import { describe, expect, it } from "vitest";
import { backingFormat, formatSize, parseQemuImgInfo, qemuImgCreateArgs, qemuImgInfoArgs } from "./qemu-img.js";

describe("qemuImgCreateArgs", () => {
  it("gives back the seed recipe exactly", () => {
    expect(qemuImgCreateArgs({ path: "vol.raw", format: "raw", sizeGiB: 20 })).toEqual([
      "create",
      "-f",
      "raw",
      "-o",
      "size=20G",
      "vol.raw",
    ]);
  });

  it("makes a qcow2 overlay on a backing image with -b and -F", () => {
    expect(
      qemuImgCreateArgs({
        path: "/var/lib/virtfleet/vms/a/disk0.qcow2",
        format: "qcow2",
        sizeGiB: 30,
        backingPath: "/var/lib/virtfleet/images/deb.qcow2",
        backingFormat: "qcow2",
      }),
    ).toEqual([
      "create",
      "-f",
      "qcow2",
      "-b",
      "/var/lib/virtfleet/images/deb.qcow2",
      "-F",
      "qcow2",
      "-o",
      "size=30G",
      "/var/lib/virtfleet/vms/a/disk0.qcow2",
    ]);
  });

  it("gives the backing format raw when asked, qcow2 when not", () => {
    expect(
      qemuImgCreateArgs({ path: "o.qcow2", format: "qcow2", backingPath: "/b.raw", backingFormat: "raw" }),
    ).toEqual(["create", "-f", "qcow2", "-b", "/b.raw", "-F", "raw", "o.qcow2"]);
    const args = qemuImgCreateArgs({ path: "o.qcow2", format: "qcow2", backingPath: "/b.qcow2" });
    expect(args.slice(args.indexOf("-F"), args.indexOf("-F") + 2)).toEqual(["-F", "qcow2"]);
    expect(args).not.toContain("-o");
  });

  it("writes a fractional size in MiB", () => {
    expect(qemuImgCreateArgs({ path: "d.qcow2", format: "qcow2", sizeGiB: 0.5 })).toEqual([
      "create",
      "-f",
      "qcow2",
      "-o",
      "size=512M",
      "d.qcow2",
    ]);
  });

  it("keeps the path as one argv entry even with spaces", () => {
    const args = qemuImgCreateArgs({ path: "/tmp/my disk.raw", format: "raw", sizeGiB: 1 });
    expect(args.at(-1)).toBe("/tmp/my disk.raw");
    expect(args).toHaveLength(6);
  });
});

describe("formatSize", () => {
  it.each([
    [20, "20G"],
    [1, "1G"],
    [0.5, "512M"],
    [1.5, "1536M"],
    [0.001, "2M"],
  ])("%s GiB is %s", (gib, text) => {
    expect(formatSize(gib)).toBe(text);
  });
});

describe("qemuImgInfoArgs", () => {
  it("asks for JSON without taking the lock", () => {
    expect(qemuImgInfoArgs("/x/disk0.qcow2")).toEqual(["info", "--output=json", "--force-share", "/x/disk0.qcow2"]);
  });
});

describe("parseQemuImgInfo", () => {
  // What qemu-img 8 prints for `qemu-img create -f qcow2 -o preallocation=metadata base.qcow2 3G`.
  const qcow2 = JSON.stringify({
    "virtual-size": 3221225472,
    filename: "/img/base.qcow2",
    "cluster-size": 65536,
    format: "qcow2",
    "actual-size": 663552,
    "format-specific": { type: "qcow2", data: { compat: "1.1" } },
    "dirty-flag": false,
  });

  it("reads format, virtual size and actual size, and ignores the rest", () => {
    expect(parseQemuImgInfo(qcow2, "/img/base.qcow2")).toEqual({
      format: "qcow2",
      "virtual-size": 3221225472,
      "actual-size": 663552,
    });
  });

  it("takes an image without actual-size (qemu-img leaves it out on some file systems)", () => {
    expect(parseQemuImgInfo('{"format":"raw","virtual-size":1048576}', "/img/r.raw")).toEqual({
      format: "raw",
      "virtual-size": 1048576,
    });
  });

  it("refuses output that is not JSON or lacks the format, naming the image", () => {
    expect(() => parseQemuImgInfo("qemu-img: Could not open", "/img/x")).toThrow(
      expect.objectContaining({ code: "COMMAND_FAILED", message: expect.stringContaining("/img/x") }),
    );
    expect(() => parseQemuImgInfo('{"virtual-size":1}', "/img/x")).toThrow(
      expect.objectContaining({ code: "COMMAND_FAILED", message: expect.stringContaining("format") }),
    );
    expect(() => parseQemuImgInfo('{"format":"qcow2","virtual-size":-1}', "/img/x")).toThrow(
      expect.objectContaining({ code: "COMMAND_FAILED" }),
    );
  });
});

describe("backingFormat", () => {
  it("gives qcow2 and raw", () => {
    expect(backingFormat({ format: "qcow2", "virtual-size": 1 }, "/b", "spec.disks.0.backing")).toBe("qcow2");
    expect(backingFormat({ format: "raw", "virtual-size": 1 }, "/b", "spec.disks.0.backing")).toBe("raw");
  });

  it("refuses any other format with INVALID_SPEC naming the field", () => {
    for (const format of ["vmdk", "vdi", "luks", "vpc"]) {
      expect(() => backingFormat({ format, "virtual-size": 1 }, "/img/b", "spec.disks.1.backing")).toThrow(
        expect.objectContaining({
          code: "INVALID_SPEC",
          field: "spec.disks.1.backing",
          message: expect.stringContaining(format),
        }),
      );
    }
  });
});
