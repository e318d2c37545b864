import * as crypto from "node:crypto";
import { z } from "zod";
import { CloudInitSpec } from "./cloud-init.js";
import { ImageName, Token, VmName } from "./names.js";

export const DiskFormat = z.enum(["raw", "qcow2"]);
export type DiskFormat = z.infer<typeof DiskFormat>;

export const DiskSpec = z
  .object({
    /** Size in GiB. For a linked clone (`backing`), the virtual size; at least the base image's. */
    sizeGiB: z.number().positive("must be greater than 0").max(65536, "must be at most 65536 GiB"),
    format: DiskFormat.default("qcow2"),
    /** A base image in the image store: the disk becomes a qcow2 overlay on it. */
    backing: ImageName.optional(),
  })
  .strict()
  .refine((d) => d.backing === undefined || d.format === "qcow2", {
    message: "a disk with a backing image must be qcow2",
    path: ["format"],
  });
export type DiskSpec = z.infer<typeof DiskSpec>;

/** Kernel arguments go into virt-install's `--boot kernel_args="…"`: no quotes, no control characters. */
export const KernelArgs = z
  .string()
  .max(1024, "must be at most 1024 characters")
  .regex(/^[\x20-\x7e]*$/, "must be printable ASCII")
  .refine((s) => !/["'\\]/.test(s), "must not contain quotes or backslashes");

export const InstallSpec = z.discriminatedUnion("method", [
  z.object({ method: z.literal("import") }).strict(),
  z.object({ method: z.literal("cdrom"), image: ImageName }).strict(),
  z
    .object({
      method: z.literal("kernel"),
      kernel: ImageName,
      initrd: ImageName.optional(),
      kernelArgs: KernelArgs.optional(),
    })
    .strict(),
]);
export type InstallSpec = z.infer<typeof InstallSpec>;

export const NicModel = z.enum(["virtio", "e1000", "e1000e", "rtl8139"]);

/** A NIC's MAC address: six colon-separated hex octets, unicast (the first octet even); kept lowercase. */
export const MacAddress = z
  .string()
  .regex(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/, "must be six hex octets separated by ':', e.g. 52:54:00:12:34:56")
  .refine((m) => (Number.parseInt(m.slice(0, 2), 16) & 1) === 0, "must be a unicast address (first octet even)")
  .transform((m) => m.toLowerCase());

export const NetworkSpec = z.discriminatedUnion("type", [
  z
    .object({ type: z.literal("bridge"), bridge: Token, model: NicModel.optional(), mac: MacAddress.optional() })
    .strict(),
  z
    .object({ type: z.literal("network"), network: Token, model: NicModel.optional(), mac: MacAddress.optional() })
    .strict(),
]);
export type NetworkSpec = z.infer<typeof NetworkSpec>;

export const VirtType = z.enum(["kvm", "qemu"]);
export type VirtType = z.infer<typeof VirtType>;

export const LabelKey = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, "must be letters, digits, '.', '_', '/' or '-'");
export const LabelValue = z
  .string()
  .max(63)
  .regex(/^[A-Za-z0-9._-]*$/, "must be letters, digits, '.', '_' or '-'");
/** At most this many labels on a VM or a host (each key ≤ 63, each value ≤ 63 characters). */
export const MAX_LABELS = 32;
export const Labels = z
  .record(LabelKey, LabelValue)
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

/** The fields of a VM spec, before the checks that span fields. */
export const VmSpecFields = z
  .object({
    name: VmName,
    /** Memory in MiB. */
    memoryMiB: z.number().int("must be a whole number of MiB").min(64, "must be at least 64 MiB").max(4194304),
    vcpus: z.number().int("must be a whole number").min(1, "must be at least 1").max(256, "must be at most 256"),
    disks: z.array(DiskSpec).max(16, "at most 16 disks").default([]),
    install: InstallSpec.default({ method: "import" }),
    /** libosinfo id, e.g. `debian12`; `generic` when unknown. */
    osVariant: Token.default("generic"),
    /** Empty: no network (`--network none`). */
    networks: z.array(NetworkSpec).max(8, "at most 8 networks").default([]),
    /** Omitted: the host's configured virt type. */
    virtType: VirtType.optional(),
    labels: Labels.default({}),
    /** cloud-init NoCloud data: the worker attaches a `cidata` seed ISO. Omitted: no seed. */
    cloudInit: CloudInitSpec.optional(),
  })
  .strict();

/** Checks that span fields: an import boots from a disk. */
export function checkSpec(spec: { install: InstallSpec; disks: unknown[] }, ctx: z.RefinementCtx): void {
  if (spec.install.method === "import" && spec.disks.length === 0) {
    ctx.addIssue({ code: "custom", path: ["disks"], message: "--import needs at least one disk to boot from" });
  }
}

/** What a caller asks for: one VM. */
export const VmSpec = VmSpecFields.superRefine(checkSpec);
export type VmSpec = z.infer<typeof VmSpec>;
export type VmSpecInput = z.input<typeof VmSpec>;

/** A VM's total disk size, in whole GiB (rounded up): what it claims of a host's disk and of a quota. */
export function totalDiskGiB(spec: { disks: readonly { sizeGiB: number }[] }): number {
  return Math.ceil(spec.disks.reduce((sum, d) => sum + d.sizeGiB, 0));
}

/** A stable fingerprint of a spec (sha256, hex): two creates with the same name and fingerprint are the same VM. */
export function specFingerprint(spec: VmSpec): string {
  return sha256Hex(stableStringify(spec));
}

/** sha256 of a string, hex: Node's one-shot crypto.hash (~3× cheaper) where it has one (20.12+). */
const sha256Hex: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === "function"
    ? (text) => crypto.hash("sha256", text, "hex")
    : (text) => crypto.createHash("sha256").update(text).digest("hex");

/** JSON with object keys sorted (and undefined members left out), so equal values give equal text. */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) {
      out += (i === 0 ? "" : ",") + (value[i] === undefined ? "" : stableStringify(value[i]));
    }
    return `${out}]`;
  }
  if (value !== null && typeof value === "object") {
    const object = value as Record<string, unknown>;
    let out = "{";
    for (const key of Object.keys(object).sort()) {
      const member = object[key];
      if (member === undefined) continue;
      out += `${out.length === 1 ? "" : ","}${JSON.stringify(key)}:${stableStringify(member)}`;
    }
    return `${out}}`;
  }
  return JSON.stringify(value);
}
