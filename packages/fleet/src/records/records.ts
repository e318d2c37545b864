import { ErrorInfo, JobKind, Phase, VirtfleetError } from "@virtfleet/core";
import { z } from "zod";

/**
 * The job and VM records as Redis stores them (hashes of strings), with zod schemas that parse a
 * stored hash into the record. Writers: admission (both, in its Lua script), EventLog.createJob /
 * append (job), VmRegistry and the append script's VM state (VM). Readers parse with these, so a
 * record some other version or hand wrote wrong fails with an error naming its field.
 */

/** A hash field that holds JSON, checked by `schema`. */
function json<T extends z.ZodType>(schema: T) {
  return z
    .string()
    .transform((raw, ctx): unknown => {
      try {
        return JSON.parse(raw);
      } catch {
        ctx.addIssue({ code: "custom", message: "is not JSON" });
        return z.NEVER;
      }
    })
    .pipe(schema);
}

/** A stored count (`"256"`): a whole number, 0 or more. */
const Count = z
  .string()
  .regex(/^\d+$/, "is not a whole number")
  .transform((s) => Number(s));

/** A job's record. */
export interface JobRecord {
  jobId: string;
  kind: JobKind;
  vm: string;
  hostId: string | undefined;
  phase: Phase;
  percent: number;
  message: string;
  createdAt: string;
  updatedAt: string;
  error: ErrorInfo | undefined;
  tenant: string | undefined;
  batchId: string | undefined;
  callbackUrl: string | undefined;
  /** Asked to be cancelled (`virtfleet jobs cancel`); the worker checks between phases. */
  cancelRequested: boolean;
}

/** A job's hash (`<prefix>:job:<id>`) parsed into its record. */
export const JobRecord = z
  .object({
    jobId: z.string().min(1),
    kind: JobKind,
    vm: z.string().default(""),
    hostId: z.string().optional(),
    phase: Phase.default("queued"),
    percent: z.coerce.number().min(0).max(100).default(0),
    message: z.string().default(""),
    createdAt: z.string().default(""),
    updatedAt: z.string().default(""),
    error: json(ErrorInfo).optional(),
    tenant: z.string().optional(),
    /** Stored as `batch` (the Lua scripts read it by that name). */
    batch: z.string().optional(),
    callbackUrl: z.string().optional(),
    cancelRequested: z.enum(["0", "1"]).optional(),
  })
  .transform(
    (h): JobRecord => ({
      jobId: h.jobId,
      kind: h.kind,
      vm: h.vm,
      hostId: h.hostId,
      phase: h.phase,
      percent: h.percent,
      message: h.message,
      createdAt: h.createdAt,
      updatedAt: h.updatedAt,
      error: h.error,
      tenant: h.tenant,
      batchId: h.batch,
      callbackUrl: h.callbackUrl,
      cancelRequested: h.cancelRequested === "1",
    }),
  );

export const VmState = z.enum(["creating", "running", "destroying", "failed"]);
export type VmState = z.infer<typeof VmState>;

/** A VM's record. */
export interface VmRecord {
  name: string;
  /** Empty while admitted and not yet placed. */
  hostId: string;
  state: VmState;
  fingerprint: string;
  jobId: string;
  memoryMiB: number;
  vcpus: number;
  labels: Record<string, string>;
  /** Anti-affinity group, if any. */
  group?: string;
  /** The API tenant that owns it, if any. */
  tenant?: string;
  /** The guest's IP addresses (IPv4 first), as its agent or DHCP last reported them. */
  addresses?: string[];
  /** When the VM was admitted (its create request), ISO 8601; absent on records written before it was kept. */
  createdAt?: string;
  updatedAt: string;
}

/** A VM's hash (`<prefix>:vm:<name>`) parsed into its record; `group` and `tenant` stored empty are none. */
export const VmRecord = z
  .object({
    name: z.string().min(1),
    hostId: z.string().default(""),
    state: VmState.default("failed"),
    fingerprint: z.string().default(""),
    jobId: z.string().default(""),
    memoryMiB: Count.default(0),
    vcpus: Count.default(0),
    labels: json(z.record(z.string(), z.string())).default({}),
    group: z.string().optional(),
    tenant: z.string().optional(),
    /** A JSON list of strings; anything else reads as none (a guest's report is not to be trusted). */
    addresses: json(z.array(z.string())).optional().catch([]),
    createdAt: z.string().optional(),
    updatedAt: z.string().default(""),
  })
  .transform(
    (h): VmRecord => ({
      name: h.name,
      hostId: h.hostId,
      state: h.state,
      fingerprint: h.fingerprint,
      jobId: h.jobId,
      memoryMiB: h.memoryMiB,
      vcpus: h.vcpus,
      labels: h.labels,
      ...(h.group === undefined || h.group === "" ? {} : { group: h.group }),
      ...(h.tenant === undefined || h.tenant === "" ? {} : { tenant: h.tenant }),
      ...(h.addresses === undefined ? {} : { addresses: h.addresses }),
      ...(h.createdAt === undefined || h.createdAt === "" ? {} : { createdAt: h.createdAt }),
      updatedAt: h.updatedAt,
    }),
  );

/**
 * Parses a stored record with its schema. One that does not parse throws INTERNAL (not retryable)
 * whose `field` is the hash field at fault and whose message names the record (`what`).
 */
export function parseRecord<T>(schema: z.ZodType<T>, hash: Record<string, string>, what: string): T {
  const parsed = schema.safeParse(hash);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path[0] === undefined ? "(record)" : String(issue.path[0]);
  throw new VirtfleetError("INTERNAL", `${what} in Redis is invalid: ${field}: ${issue?.message ?? "invalid"}`, {
    field,
    retryable: false,
  });
}
