import { z } from "zod";
import { HostId, ImageName, JobId } from "./names.js";

/** A SHA-256 digest as 64 lowercase hex digits (upper case is accepted and lowered). */
export const Sha256Hex = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, "must be a SHA-256 digest: 64 hex digits")
  .transform((s) => s.toLowerCase());

/** Where an image comes from: a URL any worker may pull, or an operator's file on one host. */
export const ImageSource = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("url"),
    url: z
      .string()
      .max(2048)
      .url()
      .refine((u) => /^https?:\/\//i.test(u), "must be an http:// or https:// URL"),
  }),
  z.object({ kind: z.literal("file"), host: HostId, path: z.string().min(1).max(4096) }),
]);
export type ImageSource = z.infer<typeof ImageSource>;

/**
 * One image of the fleet-wide catalogue, as stored in Redis. `format`, `virtualSize`, `size` and
 * (when not given at import) `sha256` are filled in by the first worker that holds the file.
 */
export const ImageRecord = z.object({
  name: ImageName,
  source: ImageSource,
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  format: z.string().max(32).optional(),
  /** Bytes, as `qemu-img info` reads it. */
  virtualSize: z.number().int().nonnegative().optional(),
  /** Bytes of the file. */
  size: z.number().int().nonnegative().optional(),
  createdAt: z.string(),
});
export type ImageRecord = z.infer<typeof ImageRecord>;

/** A catalogue entry with the hosts that hold it (a set of its own in Redis). */
export interface ImageView extends ImageRecord {
  hosts: string[];
}

/** A catalogue entry as the API answers it (`hosts` only for callers that may see hosts). */
export const ImageViewOut = ImageRecord.extend({ hosts: z.array(HostId).optional() });
export type ImageViewOut = z.infer<typeof ImageViewOut>;

/** What `images import` asks for (CLI, API `POST /v1/images`). */
export const ImageImportInput = z
  .object({
    name: ImageName,
    url: z
      .string()
      .max(2048)
      .url()
      .refine((u) => /^https?:\/\//i.test(u), "must be an http:// or https:// URL")
      .optional(),
    sha256: Sha256Hex.optional(),
    file: z
      .string()
      .min(1)
      .max(4096)
      .refine((p) => p.startsWith("/"), "must be an absolute path")
      .optional(),
    host: HostId.optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if ((v.url === undefined) === (v.file === undefined))
      ctx.addIssue({ code: "custom", path: ["url"], message: "give exactly one of url and file" });
    if (v.file !== undefined && v.host === undefined)
      ctx.addIssue({ code: "custom", path: ["host"], message: "a file import names the host that holds the file" });
    if (v.url !== undefined && v.host !== undefined)
      ctx.addIssue({ code: "custom", path: ["host"], message: "a URL import is pulled by any host; give no host" });
  });
export type ImageImportInput = z.infer<typeof ImageImportInput>;

/** An operator's request to a host's worker to checksum and register a file it holds (over Redis pub/sub). */
export const ImageFileRequest = z.object({
  id: JobId,
  name: ImageName,
  path: z.string().min(1).max(4096),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});
export type ImageFileRequest = z.infer<typeof ImageFileRequest>;

/** A worker's answer to an ImageFileRequest: the registered record, or why not. */
export const ImageFileResult = z.object({
  hostId: HostId,
  record: ImageRecord.optional(),
  error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }).optional(),
});
export type ImageFileResult = z.infer<typeof ImageFileResult>;

/** True when the store holds the image under its name or its name plus a suffix (`tiny` → `tiny.qcow2`). */
export function hasImage(store: readonly string[], image: string): boolean {
  return store.some(
    (file) => file === image || (file.startsWith(`${image}.`) && !file.slice(image.length + 1).includes(".")),
  );
}
