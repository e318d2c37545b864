import { describe, expect, it } from "vitest";
import { qemuAccess, resolveQemuOwner } from "./qemu-user.js";
import type { CommandRunner } from "./runner.js";

/** A getent that knows these passwd and group lines, and exits 2 (a throw) for anything else. */
function getent(passwd: string[], group: string[]): CommandRunner & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    async run(file, args) {
      calls.push([file, ...args]);
      const [db, key] = args;
      const line = (db === "passwd" ? passwd : group).find((l) => {
        const f = l.split(":");
        return f[0] === key || f[2] === key;
      });
      if (line === undefined) throw new Error("getent failed (exit 2)");
      return { stdout: `${line}\n`, stderr: "" };
    },
  };
}

const debian = getent(
  ["libvirt-qemu:x:64055:107:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin", "qemu:x:107:107::/:/sbin/nologin"],
  ["libvirt-qemu:x:64055:libvirt-qemu", "kvm:x:107:"],
);

describe("resolveQemuOwner", () => {
  it("takes the group named like the user (libvirt's Debian default), through getent argv", async () => {
    expect(await resolveQemuOwner(debian, "libvirt-qemu")).toEqual({
      user: "libvirt-qemu",
      group: "libvirt-qemu",
      uid: 64055,
      gid: 64055,
    });
    expect(debian.calls).toContainEqual(["getent", "passwd", "libvirt-qemu"]);
  });

  it("takes an explicit group, and the primary group when none is named like the user", async () => {
    expect(await resolveQemuOwner(debian, "libvirt-qemu", "kvm")).toMatchObject({ uid: 64055, gid: 107 });
    const noSame = getent(["qemu:x:107:36::/:/sbin/nologin"], []);
    expect(await resolveQemuOwner(noSame, "qemu")).toMatchObject({ uid: 107, gid: 36, group: "+36" });
  });

  it("takes +ID", async () => {
    expect(await resolveQemuOwner(debian, "+64055")).toMatchObject({ user: "libvirt-qemu", uid: 64055 });
  });

  it("refuses an unknown user or group with a clear error naming the option", async () => {
    await expect(resolveQemuOwner(debian, "no-such-user")).rejects.toMatchObject({
      code: "INVALID_SPEC",
      field: "qemuUser",
      message: expect.stringContaining('no user "no-such-user"'),
    });
    await expect(resolveQemuOwner(debian, "libvirt-qemu", "nogroup9")).rejects.toMatchObject({
      code: "INVALID_SPEC",
      field: "qemuGroup",
    });
    await expect(resolveQemuOwner(debian, "a:b")).rejects.toMatchObject({ code: "INVALID_SPEC", field: "qemuUser" });
  });
});

describe("qemuAccess", () => {
  const qemu = { uid: 64055, gid: 64055 };
  it("root-owned 0644 and 0444 images: readable, not writable", () => {
    expect(qemuAccess({ uid: 0, gid: 0, mode: 0o100644 }, qemu)).toEqual({ read: true, write: false });
    expect(qemuAccess({ uid: 0, gid: 0, mode: 0o100444 }, qemu)).toEqual({ read: true, write: false });
  });

  it("an image chowned to QEMU, group-writable for its group, or world-writable: writable", () => {
    expect(qemuAccess({ uid: 64055, gid: 64055, mode: 0o100644 }, qemu).write).toBe(true);
    expect(qemuAccess({ uid: 0, gid: 64055, mode: 0o100664 }, qemu).write).toBe(true);
    expect(qemuAccess({ uid: 0, gid: 0, mode: 0o100666 }, qemu).write).toBe(true);
  });

  it("root-only 0600 or 0640 of another group: not readable; the class that matches decides", () => {
    expect(qemuAccess({ uid: 0, gid: 0, mode: 0o100600 }, qemu).read).toBe(false);
    expect(qemuAccess({ uid: 0, gid: 5, mode: 0o100640 }, qemu).read).toBe(false);
    expect(qemuAccess({ uid: 0, gid: 64055, mode: 0o100604 }, qemu).read).toBe(false);
  });
});
