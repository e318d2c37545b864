import { parseOrThrow, VirtfleetError } from "@virtfleet/core";
import { z } from "zod";
import type { CommandRunner } from "./runner.js";

/** The user libvirt runs QEMU as on Debian and Ubuntu (`user` in /etc/libvirt/qemu.conf). */
export const DEFAULT_QEMU_USER = "libvirt-qemu";

/** The uid and gid every virtfleet VM's QEMU runs as; the VM's own files belong to them. */
export interface QemuOwner {
  user: string;
  group: string;
  uid: number;
  gid: number;
}

/** A user or group name as getent takes it (no `:`, no whitespace), or `+ID`. */
export const AccountName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^(\+\d+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/, "must be a user or group name, or +ID");

const Id = z.coerce
  .number()
  .int()
  .min(0)
  .max(2 ** 32 - 2);

/** `name:passwd:uid:gid:…` of `getent passwd` / `getent group`. */
function entry(stdout: string): { name: string; id: number; gid: number | undefined } | undefined {
  const fields = stdout.trim().split("\n")[0]?.split(":") ?? [];
  const id = Id.safeParse(fields[2]);
  if (fields[0] === undefined || !id.success) return undefined;
  const gid = Id.safeParse(fields[3]);
  return { name: fields[0], id: id.data, gid: gid.success ? gid.data : undefined };
}

async function lookup(runner: CommandRunner, db: "passwd" | "group", name: string) {
  const key = name.startsWith("+") ? name.slice(1) : name;
  try {
    return entry((await runner.run("getent", [db, key], { timeoutMs: 10_000 })).stdout);
  } catch {
    return undefined; // getent exits 2 for an unknown name
  }
}

/**
 * Resolves the QEMU user (and group: by default the group named like the user, else the user's
 * primary group) to ids, through NSS (`getent`). An unknown user or group is INVALID_SPEC naming
 * `qemuUser` / `qemuGroup`.
 */
export async function resolveQemuOwner(runner: CommandRunner, user: string, group?: string): Promise<QemuOwner> {
  const u = await lookup(runner, "passwd", parseOrThrow(AccountName, user, "qemuUser"));
  if (u === undefined) {
    throw new VirtfleetError(
      "INVALID_SPEC",
      `no user "${user}" on this host: set the QEMU user to the one libvirt runs QEMU as (user in qemu.conf)`,
      { field: "qemuUser" },
    );
  }
  if (group !== undefined) {
    const g = await lookup(runner, "group", parseOrThrow(AccountName, group, "qemuGroup"));
    if (g === undefined) {
      throw new VirtfleetError("INVALID_SPEC", `no group "${group}" on this host`, { field: "qemuGroup" });
    }
    return { user: u.name, group: g.name, uid: u.id, gid: g.id };
  }
  const same = await lookup(runner, "group", u.name);
  if (same !== undefined) return { user: u.name, group: same.name, uid: u.id, gid: same.id };
  const primary = u.gid ?? u.id;
  return { user: u.name, group: `+${primary}`, uid: u.id, gid: primary };
}

/** What QEMU, running as `owner` (without its supplementary groups), may do with a file of this owner and mode. */
export function qemuAccess(
  file: { uid: number; gid: number; mode: number },
  owner: Pick<QemuOwner, "uid" | "gid">,
): { read: boolean; write: boolean } {
  const bits =
    file.uid === owner.uid ? (file.mode >> 6) & 7 : file.gid === owner.gid ? (file.mode >> 3) & 7 : file.mode & 7;
  // POSIX checks one class: the owner's bits, else the group's, else the others'.
  return { read: (bits & 4) !== 0, write: (bits & 2) !== 0 };
}
