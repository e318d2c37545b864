import { z } from "zod";
import { GuestReadyOptions } from "./jobs.js";
import { HostId, VmName } from "./names.js";
import { checkSpec, Labels, VmSpecFields } from "./vm-spec.js";

// Lab environments: templates, labs, warm pools and the leases on what they hand out.

const shortName = (max: number, what: string) =>
  z
    .string()
    .min(1, "must not be empty")
    .max(max, `must be at most ${max} characters (${what})`)
    .regex(
      /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/,
      "must be lowercase letters, digits and '-', starting and ending with a letter or digit",
    );

/** A template's name. */
export const TemplateName = shortName(63, "a template name");
/** A pool's name: its VMs are `<pool>-<8 characters>`, so it leaves room for that. */
export const PoolName = shortName(40, "a pool's VMs are named <pool>-<8 characters>");
/** A lab's name: its VMs are `<lab>-<name>-<n>`. */
export const LabName = shortName(30, "a lab's VMs are named <lab>-<name>-<n>");
/** A VM's name inside a lab file (`<lab>-<name>-<n>`). */
export const LabVmName = shortName(24, "a lab's VMs are named <lab>-<name>-<n>");

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `90s`, `30m`, `2h`, `1d` (or a number of seconds) to milliseconds; undefined if it is not one. */
export function parseDurationMs(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : undefined;
  const m = DURATION.exec(value.trim());
  if (m === null) return undefined;
  return Number(m[1]) * (UNIT_MS[m[2] as string] as number);
}

/** Milliseconds as the shortest exact duration (`90s`, `30m`, `2h`). */
export function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"]) {
    const size = UNIT_MS[unit] as number;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * The longest duration anything takes (a lease, a lifetime, an age): 365 days. Longer ones would
 * also make times past what a Date can hold (a `99999999999d` lifetime broke every read of its lease).
 */
export const MAX_DURATION_MS = 365 * 86_400_000;

/** A duration as a user writes it (`30m`, `2h`, `90s`, `1d`, or seconds as a number), in milliseconds. */
export const Duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDurationMs(v);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: "must be a duration such as 90s, 30m, 2h or 1d" });
    return z.NEVER;
  }
  if (ms > MAX_DURATION_MS) {
    ctx.addIssue({ code: "custom", message: `must be at most ${formatDuration(MAX_DURATION_MS)}` });
    return z.NEVER;
  }
  return ms;
});
export type DurationInput = z.input<typeof Duration>;

/** The longest a lease may run in all, from when it was made, unless a pool or lab says otherwise. */
export const DEFAULT_MAX_LIFETIME_MS = 24 * 3_600_000;
/** A claim's lease when the claim names none. */
export const DEFAULT_CLAIM_TTL_MS = 30 * 60_000;
/** A lab's lease when `lab up` names none. */
export const DEFAULT_LAB_TTL_MS = 2 * 3_600_000;
/** Ready VMs older than this are replaced while unclaimed. */
export const DEFAULT_MAX_READY_AGE_MS = 6 * 3_600_000;
/** A pool makes at most this many VMs at a time. */
export const DEFAULT_REFILL_CONCURRENCY = 2;

/**
 * A template: everything `create` takes but the name. The file is the API's VM spec (the `spec`
 * of `POST /v1/vms`) without `name`, plus an optional `guestReady` (the readiness strategy).
 */
export const TemplateSpec = VmSpecFields.omit({ name: true })
  .extend({ guestReady: GuestReadyOptions.optional() })
  .strict()
  .superRefine(checkSpec);
export type TemplateSpec = z.infer<typeof TemplateSpec>;
export type TemplateSpecInput = z.input<typeof TemplateSpec>;

export const TemplateView = z.object({
  name: TemplateName,
  /** 1 for the first `put`; each change of the spec adds one (a `put` of the same spec does not). */
  version: z.number().int().min(1),
  spec: TemplateSpec,
  tenant: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type TemplateView = z.infer<typeof TemplateView>;

/** `templates put` / `PUT /v1/templates/{name}`: the template as stored, and whether this put made a new version. */
export const TemplatePutResult = TemplateView.extend({
  /** True when this put stored a new version (the first, or a changed spec): VMs of older versions are stale. */
  changed: z.boolean(),
});
export type TemplatePutResult = z.infer<typeof TemplatePutResult>;

/** `DELETE /v1/templates/{name}`'s answer. */
export const TemplateRemoved = z.object({ name: TemplateName, removed: z.literal(true) });
export type TemplateRemoved = z.infer<typeof TemplateRemoved>;

/** What a pool's ready VMs do while they wait for a claim. */
export const IdleMode = z.enum(["pause", "run"]);
export type IdleMode = z.infer<typeof IdleMode>;

const poolFields = {
  template: TemplateName,
  /** Ready and unclaimed VMs the pool keeps. */
  minReady: z.number().int().min(0).max(1000),
  /** VMs of the pool in all (starting, ready and claimed). */
  max: z.number().int().min(1).max(1000),
  maxReadyAgeMs: z.number().int().min(1000),
  refillConcurrency: z.number().int().min(1).max(100),
  idle: IdleMode,
  /** `auto`: ready = max(minReady, recent claims per minute × minutes to make one), capped at max. */
  targetReady: z.enum(["min", "auto"]),
  /** A claim's lease when the claim names none. */
  claimTtlMs: z.number().int().min(1000),
  /** The longest a claim's lease may be extended to, from the claim. */
  maxLifetimeMs: z.number().int().min(1000),
};

/** `pool create` / `POST /v1/pools`. */
export const PoolCreateRequest = z
  .object({
    name: PoolName,
    template: TemplateName,
    minReady: poolFields.minReady,
    max: poolFields.max,
    maxReadyAge: Duration.optional(),
    refillConcurrency: poolFields.refillConcurrency.optional(),
    idle: IdleMode.optional(),
    targetReady: z.enum(["min", "auto"]).optional(),
    claimTtl: Duration.optional(),
    maxLifetime: Duration.optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.minReady > p.max)
      ctx.addIssue({ code: "custom", path: ["minReady"], message: `must be at most max (${p.max})` });
  });
export type PoolCreateRequest = z.input<typeof PoolCreateRequest>;

/** `pool update` / `PATCH /v1/pools/{name}`: any of the settings. */
export const PoolUpdateRequest = z
  .object({
    template: TemplateName.optional(),
    minReady: poolFields.minReady.optional(),
    max: poolFields.max.optional(),
    maxReadyAge: Duration.optional(),
    refillConcurrency: poolFields.refillConcurrency.optional(),
    idle: IdleMode.optional(),
    targetReady: z.enum(["min", "auto"]).optional(),
    claimTtl: Duration.optional(),
    maxLifetime: Duration.optional(),
  })
  .strict();
export type PoolUpdateRequest = z.input<typeof PoolUpdateRequest>;

/** A pool's settings, as stored. */
export const PoolConfig = z.object({
  name: PoolName,
  ...poolFields,
  tenant: z.string().optional(),
  createdAt: z.string(),
});
export type PoolConfig = z.infer<typeof PoolConfig>;

/** `pool ls --json`'s items and `GET /v1/pools`. */
export const PoolView = PoolConfig.extend({
  /** The template version new VMs are made from. */
  templateVersion: z.number().int(),
  ready: z.number().int(),
  starting: z.number().int(),
  claimed: z.number().int(),
  /** Ready VMs due for replacement (older than maxReadyAge, or from an older template version). */
  stale: z.number().int(),
  /** Ready VMs the pool aims for now (minReady, or more with `targetReady: auto`). */
  target: z.number().int(),
  /** Why the pool is below its minimum, when it is (e.g. "2 starting", "at max", the last create error). */
  below: z.string().optional(),
});
export type PoolView = z.infer<typeof PoolView>;

/** One VM of a pool (`pool show`, `GET /v1/pools/{name}`'s `vms`). */
export const PoolVmView = z.object({
  name: VmName,
  state: z.enum(["starting", "ready", "claimed"]),
  host: HostId.optional(),
  addresses: z.array(z.string()).optional(),
  /** The template version it was made from. */
  templateVersion: z.number().int().optional(),
  /** The create job (while starting, and after). */
  jobId: z.string().optional(),
  readyAt: z.string().optional(),
  /** A ready VM due for replacement. */
  stale: z.boolean().optional(),
  leaseId: z.string().optional(),
  expiresAt: z.string().optional(),
});
export type PoolVmView = z.infer<typeof PoolVmView>;

/** `pool show NAME`, `GET /v1/pools/{name}`: the pool and its VMs. */
export const PoolDetail = PoolView.extend({ vms: z.array(PoolVmView) });
export type PoolDetail = z.infer<typeof PoolDetail>;

/** `DELETE /v1/pools/{name}`'s answer: the VMs being destroyed (their destroy jobs). */
export const PoolRemoved = z.object({ name: PoolName, vms: z.array(z.string()), jobs: z.array(z.string()) });
export type PoolRemoved = z.infer<typeof PoolRemoved>;

/** `pool claim` / `POST /v1/pools/{name}/claims`. */
export const ClaimRequest = z
  .object({
    /** The lease: default the pool's claimTtl. */
    ttl: Duration.optional(),
    /** With no VM ready, wait this long for one (default 0: POOL_EMPTY at once). */
    wait: Duration.optional(),
  })
  .strict();
export type ClaimRequest = z.input<typeof ClaimRequest>;

/** A claim's answer (`pool claim --json`). */
export const ClaimResult = z.object({
  vm: VmName,
  host: HostId,
  addresses: z.array(z.string()),
  leaseId: z.string(),
  expiresAt: z.string(),
});
export type ClaimResult = z.infer<typeof ClaimResult>;

export const LeaseKind = z.enum(["claim", "lab"]);
export type LeaseKind = z.infer<typeof LeaseKind>;

/** A lease: what it holds (a claimed VM or a lab) and when it ends. */
export const LeaseView = z.object({
  id: z.string(),
  kind: LeaseKind,
  /** The claimed VM's name, or the lab's name. */
  target: z.string(),
  /** For a claim: the pool it came from. */
  pool: z.string().optional(),
  tenant: z.string().optional(),
  createdAt: z.string(),
  expiresAt: z.string(),
  /** `extend` never goes past this. */
  maxExpiresAt: z.string(),
});
export type LeaseView = z.infer<typeof LeaseView>;

/** `POST /v1/leases/{id}/extend`, `lab extend NAME 1h`: the lease then ends this long from now. */
export const ExtendRequest = z.object({ by: Duration }).strict();

/** A lab file (`lab up -f lab.yaml`). */
export const LabFile = z
  .object({
    vms: z
      .array(
        z
          .object({
            name: LabVmName,
            template: TemplateName,
            count: z.number().int().min(1).max(100).default(1),
          })
          .strict(),
      )
      .min(1, "a lab needs at least one VM")
      .max(50),
    labels: Labels.default({}),
    /** Spread the lab's VMs over different hosts where possible. */
    antiAffinity: z.boolean().default(false),
    /** One VM failed: remove the whole lab (default), or keep what came up. */
    rollbackOnFailure: z.boolean().default(true),
  })
  .strict()
  .superRefine((f, ctx) => {
    const seen = new Set<string>();
    f.vms.forEach((v, i) => {
      if (seen.has(v.name)) ctx.addIssue({ code: "custom", path: ["vms", i, "name"], message: `"${v.name}" twice` });
      seen.add(v.name);
    });
    const total = f.vms.reduce((n, v) => n + v.count, 0);
    if (total > 200) ctx.addIssue({ code: "custom", path: ["vms"], message: `${total} VMs: at most 200 in a lab` });
  });
export type LabFile = z.infer<typeof LabFile>;
export type LabFileInput = z.input<typeof LabFile>;

/** `lab up` / `POST /v1/labs`. */
export const LabUpRequest = z
  .object({ name: LabName, lab: LabFile, ttl: Duration.optional(), maxLifetime: Duration.optional() })
  .strict();
export type LabUpRequest = z.input<typeof LabUpRequest>;

export const LabState = z.enum(["creating", "ready", "failed", "expiring", "gone"]);
export type LabState = z.infer<typeof LabState>;

export const LabVmView = z.object({
  name: VmName,
  template: TemplateName,
  templateVersion: z.number().int(),
  jobId: z.string(),
  /** The VM's job phase (`queued` … `done`, `failed`), or `destroyed`. */
  phase: z.string(),
  host: HostId.optional(),
  addresses: z.array(z.string()).default([]),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type LabVmView = z.infer<typeof LabVmView>;

export const LabView = z.object({
  name: LabName,
  state: LabState,
  tenant: z.string().optional(),
  labels: Labels,
  createdAt: z.string(),
  expiresAt: z.string(),
  leaseId: z.string(),
  batchId: z.string().optional(),
  /** Why it failed (the first VM that failed, and its error), or why it is expiring. */
  reason: z.string().optional(),
  /** A failed lab whose VMs have all been removed (`rollbackOnFailure`). */
  rolledBack: z.boolean().optional(),
  vms: z.array(LabVmView),
});
export type LabView = z.infer<typeof LabView>;

/** An entry of a lab's event stream: a change of the lab's state, or one of its VMs' jobs ending. */
export const LabEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("state"),
    lab: LabName,
    state: LabState,
    reason: z.string().optional(),
    rolledBack: z.boolean().optional(),
    at: z.string(),
  }),
  z.object({
    type: z.literal("vm"),
    lab: LabName,
    vm: VmName,
    /** `done`, `failed`, `cancelled` (its create job ended) or `destroyed`. */
    phase: z.string(),
    jobId: z.string(),
    host: HostId.optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    at: z.string(),
  }),
]);
export type LabEvent = z.infer<typeof LabEvent>;
/** A lab event with its stream id (resume after it). */
export type StreamedLabEvent = LabEvent & { id: string };

/** Labels virtfleet puts on pool and lab VMs (so a reaper can find those whose pool or lab is gone). */
export const POOL_LABEL = "virtfleet.pool";
export const LAB_LABEL = "virtfleet.lab";

/** A lease's id (`lease-` and hex), as the API's `{id}` and the CLI's argument. */
export const LeaseId = z.string().regex(/^lease-[0-9a-f]{1,64}$/, "not a lease id (lease-…)");
