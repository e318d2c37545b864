import { PoolConfig } from "@virtfleet/core";
import type { QuotaLimits } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import { z } from "zod";
import type { LabKeys } from "../keys.js";
import type { TenantScope } from "../templates/template-store.js";

/** Who asks for a pool: an API tenant (whose quota its VMs count against) or the operator. */
export interface PoolScope extends TenantScope {
  /** The tenant's quota, enforced when the pool's VMs are made. */
  quota?: QuotaLimits | undefined;
}

/** A pool's settings as stored, with what the manager keeps beside them. */
export interface StoredPool extends PoolConfig {
  quota?: QuotaLimits;
  /** The last create that failed: "CODE: message" (cleared by the next VM that becomes ready). */
  lastError?: string;
}

const QuotaRecord = z
  .object({
    vms: z.number().optional(),
    memoryMiB: z.number().optional(),
    vcpus: z.number().optional(),
    diskGiB: z.number().optional(),
  })
  .strip();

/** A pool's settings as hash fields (numbers as strings, quota as JSON). */
export function poolFields(p: StoredPool): Record<string, string> {
  return {
    name: p.name,
    template: p.template,
    minReady: String(p.minReady),
    max: String(p.max),
    maxReadyAgeMs: String(p.maxReadyAgeMs),
    refillConcurrency: String(p.refillConcurrency),
    idle: p.idle,
    targetReady: p.targetReady,
    claimTtlMs: String(p.claimTtlMs),
    maxLifetimeMs: String(p.maxLifetimeMs),
    tenant: p.tenant ?? "",
    createdAt: p.createdAt,
    quota: p.quota === undefined ? "" : JSON.stringify(p.quota),
  };
}

/** A pool's hash read back (undefined when there is none or it does not parse). */
export function parsePool(h: Record<string, string>): StoredPool | undefined {
  if (h.name === undefined) return undefined;
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const parsed = PoolConfig.safeParse({
    name: h.name,
    template: h.template,
    minReady: num(h.minReady),
    max: num(h.max),
    maxReadyAgeMs: num(h.maxReadyAgeMs),
    refillConcurrency: num(h.refillConcurrency),
    idle: h.idle,
    targetReady: h.targetReady,
    claimTtlMs: num(h.claimTtlMs),
    maxLifetimeMs: num(h.maxLifetimeMs),
    ...(h.tenant ? { tenant: h.tenant } : {}),
    createdAt: h.createdAt,
  });
  if (!parsed.success) return undefined;
  let quota: QuotaLimits | undefined;
  if (h.quota) {
    const q = QuotaRecord.safeParse(safeJson(h.quota));
    if (q.success) quota = q.data;
  }
  return {
    ...parsed.data,
    ...(quota === undefined ? {} : { quota }),
    ...(h.lastError ? { lastError: h.lastError } : {}),
  };
}

/** One pool VM's record (`<prefix>:pool:<pool>:vm:<vm>`), written when it becomes ready. */
export const PoolVmRecord = z.object({
  vm: z.string(),
  host: z.string(),
  addresses: z.array(z.string()),
  templateVersion: z.number().int(),
  jobId: z.string(),
  createdAt: z.number(),
  readyAt: z.number(),
  leaseId: z.string().optional(),
  claimedAt: z.number().optional(),
});
export type PoolVmRecord = z.infer<typeof PoolVmRecord>;

/** A pool VM's record as hash fields (without readyAt, which pool-ready.lua sets). */
export function poolVmFields(r: Omit<PoolVmRecord, "readyAt" | "leaseId" | "claimedAt">): string[] {
  return [
    "vm",
    r.vm,
    "host",
    r.host,
    "addresses",
    JSON.stringify(r.addresses),
    "templateVersion",
    String(r.templateVersion),
    "jobId",
    r.jobId,
    "createdAt",
    String(r.createdAt),
  ];
}

export function parsePoolVm(h: Record<string, string>): PoolVmRecord | undefined {
  if (h.vm === undefined) return undefined;
  const parsed = PoolVmRecord.safeParse({
    vm: h.vm,
    host: h.host ?? "",
    addresses: z
      .array(z.string())
      .catch([])
      .parse(safeJson(h.addresses ?? "[]")),
    templateVersion: Number(h.templateVersion ?? 0),
    jobId: h.jobId ?? "",
    createdAt: Number(h.createdAt ?? 0),
    readyAt: Number(h.readyAt ?? 0),
    ...(h.leaseId ? { leaseId: h.leaseId } : {}),
    ...(h.claimedAt ? { claimedAt: Number(h.claimedAt) } : {}),
  });
  return parsed.success ? parsed.data : undefined;
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** The pool's settings, or undefined. */
export async function readPool(redis: Redis, keys: LabKeys, name: string): Promise<StoredPool | undefined> {
  return parsePool(await redis.hgetall(keys.pool(name)));
}

/** Whether a scope may see a pool (an operator sees all; a tenant its own). */
export function poolVisible(pool: StoredPool, scope: TenantScope): boolean {
  return scope.tenant === undefined || pool.tenant === scope.tenant;
}

/** A starting VM's entry: its create job id, or `pending:<ms>` while the create is being asked for. */
export function pendingEntry(now: number): string {
  return `pending:${now}`;
}
