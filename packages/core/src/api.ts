import { z } from "zod";
import { ErrorCode, ErrorInfo } from "./errors.js";
import { GuestReadyOptions, MAX_WAIT_FOR_CAPACITY_SEC } from "./jobs.js";
import { HostId, JobId, VmName } from "./names.js";
import { NetworkAllowText } from "./network-allow.js";
import { PlacementPolicy } from "./placement.js";
import { checkSpec, Labels, VmSpec, VmSpecFields } from "./vm-spec.js";

/**
 * Where terminal events are POSTed (signed with HMAC-SHA256, the tenant's key). http(s) only; the API
 * refuses loopback, private, link-local and metadata addresses unless its operator allows private ones.
 */
export const CallbackUrl = z
  .string()
  .max(2048)
  .url()
  .refine((u) => /^https?:\/\//.test(u), "must be an http or https URL");

/** Placement as an API caller gives it. */
export const PlacementRequest = z
  .object({
    host: HostId.optional(),
    labels: Labels.optional(),
    group: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)
      .optional(),
    policy: PlacementPolicy.optional(),
    /** When no host has room, wait this long (seconds) before NO_CAPACITY. */
    waitForCapacitySec: z
      .number()
      .int()
      .min(0)
      .max(MAX_WAIT_FOR_CAPACITY_SEC, `must be at most ${MAX_WAIT_FOR_CAPACITY_SEC} s`)
      .optional(),
  })
  .strict();
export type PlacementRequest = z.infer<typeof PlacementRequest>;

/** `POST /v1/vms`. */
export const CreateVmRequest = z
  .object({
    spec: VmSpec,
    placement: PlacementRequest.optional(),
    guestReady: GuestReadyOptions.optional(),
    callbackUrl: CallbackUrl.optional(),
  })
  .strict();
export type CreateVmRequest = z.infer<typeof CreateVmRequest>;

/** A name with `{n}` in it, for batches: `lab-{n}` gives lab-1, lab-2, … */
export const NamePattern = z
  .string()
  .min(1)
  .max(60)
  .refine((p) => p.includes("{n}"), "must contain {n}")
  .refine((p) => VmName.safeParse(p.replaceAll("{n}", "1")).success, "must give valid VM names when {n} is a number");

/** The most VMs one `POST /v1/batches` may ask for. */
export const MAX_BATCH_ITEMS = 1000;

/** `POST /v1/batches`: a list of specs, or one spec with a `{n}` name pattern and a count. */
export const BatchRequest = z
  .object({
    vms: z.array(VmSpec).min(1).max(MAX_BATCH_ITEMS).optional(),
    template: VmSpecFields.extend({ name: NamePattern }).strict().superRefine(checkSpec).optional(),
    count: z.number().int().min(1).max(MAX_BATCH_ITEMS).optional(),
    placement: PlacementRequest.optional(),
    guestReady: GuestReadyOptions.optional(),
    callbackUrl: CallbackUrl.optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    const list = b.vms !== undefined;
    const tpl = b.template !== undefined;
    if (list === tpl)
      ctx.addIssue({ code: "custom", path: ["vms"], message: "give either vms or template with count" });
    if (tpl && b.count === undefined)
      ctx.addIssue({ code: "custom", path: ["count"], message: "required with template" });
    if (list && b.count !== undefined) ctx.addIssue({ code: "custom", path: ["count"], message: "only with template" });
    if (list) {
      const names = new Set<string>();
      b.vms?.forEach((v, i) => {
        if (names.has(v.name))
          ctx.addIssue({ code: "custom", path: ["vms", i, "name"], message: "duplicate name in batch" });
        names.add(v.name);
      });
    }
  });
export type BatchRequest = z.infer<typeof BatchRequest>;

export const JobAccepted = z.object({ jobId: JobId, vm: VmName, kind: z.enum(["create", "destroy"]) });
export type JobAccepted = z.infer<typeof JobAccepted>;

/** One VM of a batch: accepted (a job) or refused at admission (an error). */
export const BatchItem = z.object({
  vm: VmName,
  jobId: JobId.optional(),
  error: ErrorInfo.optional(),
});

export const BatchAccepted = z.object({ batchId: z.string(), items: z.array(BatchItem) });
export type BatchAccepted = z.infer<typeof BatchAccepted>;

export const JobView = z.object({
  jobId: JobId,
  kind: z.enum(["create", "destroy"]),
  vm: VmName,
  hostId: z.string().optional(),
  phase: z.string(),
  percent: z.number(),
  message: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  error: ErrorInfo.optional(),
  batchId: z.string().optional(),
});
export type JobView = z.infer<typeof JobView>;

export const BatchView = z.object({
  batchId: z.string(),
  createdAt: z.string(),
  total: z.number().int(),
  counts: z.record(z.string(), z.number().int()),
  items: z.array(z.object({ vm: VmName, jobId: JobId.optional(), phase: z.string(), error: ErrorInfo.optional() })),
});
export type BatchView = z.infer<typeof BatchView>;

export const VmView = z.object({
  name: VmName,
  hostId: z.string(),
  state: z.string(),
  memoryMiB: z.number(),
  vcpus: z.number(),
  labels: z.record(z.string(), z.string()),
  group: z.string().optional(),
  jobId: z.string(),
  /** The guest's IP addresses (IPv4 first, no prefix length) as its agent or DHCP reported them at ready. */
  addresses: z.array(z.string()).optional(),
  /** When the VM was admitted, ISO 8601 (absent for VMs recorded before virtfleet kept it). */
  createdAt: z.string().optional(),
  updatedAt: z.string(),
});
export type VmView = z.infer<typeof VmView>;

export const HostViewOut = z.object({
  hostId: z.string(),
  up: z.boolean(),
  draining: z.boolean(),
  virtTypes: z.array(z.string()),
  labels: z.record(z.string(), z.string()),
  capacity: z.object({ memoryMiB: z.number(), vcpus: z.number() }),
  allocated: z.object({ memoryMiB: z.number(), vcpus: z.number() }),
  diskFreeGiB: z.number(),
  runningVms: z.number(),
  images: z.array(z.string()),
  version: z.string(),
  heartbeatAt: z.string(),
});

/** `GET /v1/vms` query. */
export const ListVmsQuery = z
  .object({
    host: HostId.optional(),
    state: z.enum(["creating", "running", "destroying"]).optional(),
    label: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*=[A-Za-z0-9._-]*$/, "must be key=value")
      .optional(),
  })
  .strict();

/** RFC 9457 problem details, with virtfleet's stable code and the failing field. */
export const Problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  code: ErrorCode,
  detail: z.string().optional(),
  field: z.string().optional(),
  issues: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
});
export type Problem = z.infer<typeof Problem>;

export const Scope = z.enum(["vms:read", "vms:write", "hosts:read", "metrics:read", "admin"]);
export type Scope = z.infer<typeof Scope>;

/** One entry of the tokens file (`VIRTFLEET_API_TOKENS_FILE`). */
/** Requests a minute a token may make when its entry names no `rateLimit`. */
export const DEFAULT_RATE_LIMIT_PER_MIN = 600;
/** Requests a minute from one address without a valid token (each answered 401). */
export const ANONYMOUS_RATE_LIMIT_PER_MIN = 120;

export const ApiToken = z
  .object({
    id: z.string().min(1).max(64),
    token: z.string().min(16).optional(),
    tokenSha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
    scopes: z.array(Scope).min(1),
    tenant: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
    /** Per-tenant quotas; the first token of a tenant that names them sets them. */
    quota: z
      .object({
        vms: z.number().int().min(0).optional(),
        memoryMiB: z.number().int().min(0).optional(),
        vcpus: z.number().int().min(0).optional(),
        /** Total disk size of the tenant's VMs, in GiB. */
        diskGiB: z.number().int().min(0).optional(),
        /** Batches the tenant may keep stored at once (the oldest ended ones are dropped first). Default 100. */
        batches: z.number().int().min(1).max(10_000).optional(),
      })
      .strict()
      .optional(),
    /** Requests per minute. Default DEFAULT_RATE_LIMIT_PER_MIN. */
    rateLimit: z.number().int().min(1).optional(),
    /**
     * The networks this token's creates may attach guests to: `NAME` / `bridge=NAME` (a bridge),
     * `network=NAME` (a libvirt network), `*` (any). Default: none (only `--network none`).
     */
    networks: z.array(NetworkAllowText).max(256).optional(),
    /**
     * HMAC key for the webhooks of this token's tenant (every token of a tenant that names one must
     * name the same). Default: the server's `VIRTFLEET_WEBHOOK_SECRET`; with neither, callbacks are refused.
     */
    webhookSecret: z.string().min(16).max(1024).optional(),
  })
  .strict()
  .refine((t) => (t.token === undefined) !== (t.tokenSha256 === undefined), "give exactly one of token or tokenSha256");
export type ApiToken = z.infer<typeof ApiToken>;
export const ApiTokens = z.array(ApiToken).min(1);
