import {
  DEFAULT_LAB_TTL_MS,
  DEFAULT_MAX_LIFETIME_MS,
  LAB_LABEL,
  LabEvent,
  LabName,
  type LabState,
  LabUpRequest,
  type LabView,
  type LeaseView,
  parseOrThrow,
  type StreamedLabEvent,
  toErrorInfo,
  VirtfleetError,
} from "@virtfleet/core";
import type { BatchItemOptions, QuotaLimits } from "@virtfleet/fleet";
import { type Logger, pino } from "pino";
import type { LabsDeps, LeaseHandler } from "../deps.js";
import { LuaScript } from "../lua.js";
import type { TenantScope } from "../templates/template-store.js";
import { type LabRecord, type LabVmEntry, labFields, parseLabFields, parseVmEntry } from "./lab-record.js";
import { byName, deriveState, removed, type VmObservation, vmAnnouncement, vmFailure, vmPhase } from "./lab-state.js";

const createScript = new LuaScript("lab-create", 4);
const transitionScript = new LuaScript("lab-transition", 2);
const vmUpdateScript = new LuaScript("lab-vm-update", 2);

/** How long a gone (or failed and rolled back) lab is kept for `lab show` before it is removed. */
export const DEFAULT_LAB_RETENTION_MS = 3_600_000;
/** Entries kept in a lab's event stream (approximately). */
export const DEFAULT_LAB_EVENTS_MAXLEN = 1000;
/** A cancel or destroy asked for and not seen through within this long is asked for again. */
export const DEFAULT_LAB_RETRY_MS = 60_000;

export interface LabServiceOptions {
  /** Default DEFAULT_LAB_RETENTION_MS (1 h). */
  retentionMs?: number;
  /** Default DEFAULT_LAB_EVENTS_MAXLEN (1000). */
  eventsMaxLen?: number;
  /** Default DEFAULT_LAB_RETRY_MS (60 s). */
  retryMs?: number;
}

/** Who makes a lab: the tenant that owns it (its quota counts the lab's VMs). */
export interface LabOwner {
  tenant?: string | undefined;
  quota?: QuotaLimits | undefined;
  /** Batches the tenant may keep stored at once. */
  maxBatches?: number | undefined;
}

/** What LabService is built from (LabsDeps without power control; the logger defaults to a silent one). */
export type LabServiceDeps = Pick<LabsDeps, "redis" | "keys" | "fleet" | "templates" | "leases"> & {
  logger?: Logger | undefined;
};

/**
 * Labs: several VMs made from templates, created as one batch, watched and removed as one, under one
 * lease. State: `creating` → `ready` | `failed` (rolled back by default); `expiring` → `gone`. The
 * state is derived from the VMs' jobs on every read; LabWatcher (run by the elected controller)
 * records the moves, announces them on the lab's event stream, and rolls back and tears down.
 */
export class LabService {
  readonly #d: LabServiceDeps & { logger: Logger };
  readonly #retentionMs: number;
  readonly #maxLen: number;
  readonly #retryMs: number;

  /** What a lab's lease ending does: the lab goes down (VMs destroyed). */
  readonly leaseHandler: LeaseHandler = {
    expire: async (lease: LeaseView, reason: "expired" | "released") => {
      try {
        await this.down(lease.target, {}, reason === "expired" ? "expired" : "down");
      } catch (error) {
        if (!(error instanceof VirtfleetError && error.code === "NOT_FOUND")) throw error;
      }
    },
  };

  constructor(deps: LabServiceDeps, options: LabServiceOptions = {}) {
    this.#d = { ...deps, logger: deps.logger ?? pino({ level: "silent" }) };
    this.#retentionMs = options.retentionMs ?? DEFAULT_LAB_RETENTION_MS;
    this.#maxLen = options.eventsMaxLen ?? DEFAULT_LAB_EVENTS_MAXLEN;
    this.#retryMs = options.retryMs ?? DEFAULT_LAB_RETRY_MS;
  }

  /**
   * Makes a lab: every template must exist (NOT_FOUND naming `lab.vms.N.template`), the name must be
   * free (NAME_CLASH); its VMs `<lab>-<name>-<n>` are asked for as one batch, labelled with the lab
   * file's labels and `virtfleet.lab=<lab>`, in the anti-affinity group `lab.<name>` when asked.
   * `input` is a LabUpRequest as sent (durations as `2h`); its invalid fields are named after
   * `fieldPrefix` (the API's `body`).
   */
  async up(input: unknown, owner: LabOwner = {}, fieldPrefix = ""): Promise<LabView> {
    const req = parseOrThrow(LabUpRequest, input, fieldPrefix);
    const { keys, templates, leases, fleet, redis } = this.#d;
    const scope = { tenant: owner.tenant };
    const used = await Promise.all(
      req.lab.vms.map((v, i) => templates.require(v.template, scope, `lab.vms.${i}.template`)),
    );
    const specs: Record<string, unknown>[] = [];
    const items: BatchItemOptions[] = [];
    const entries: Record<string, string> = {};
    req.lab.vms.forEach((v, i) => {
      const template = used[i];
      if (template === undefined) return;
      const { guestReady, ...spec } = template.spec;
      for (let n = 1; n <= v.count; n++) {
        const name = `${req.name}-${v.name}-${n}`;
        specs.push({ ...spec, name, labels: { ...spec.labels, ...req.lab.labels, [LAB_LABEL]: req.name } });
        items.push(guestReady === undefined ? {} : { guestReady });
        const entry: LabVmEntry = { template: template.name, templateVersion: template.version };
        entries[name] = JSON.stringify(entry);
      }
    });

    // A lab of this name that has ended since the watcher last looked frees its name now.
    if ((await redis.exists(keys.lab(req.name))) === 1) await this.sync(req.name);

    const now = Date.now();
    const lease = await leases.create(
      {
        kind: "lab",
        target: req.name,
        ...(owner.tenant === undefined ? {} : { tenant: owner.tenant }),
        ttlMs: req.ttl ?? DEFAULT_LAB_TTL_MS,
        maxLifetimeMs: req.maxLifetime ?? DEFAULT_MAX_LIFETIME_MS,
      },
      now,
    );
    const record: LabRecord = {
      name: req.name,
      state: "creating",
      ...(owner.tenant === undefined ? {} : { tenant: owner.tenant }),
      labels: req.lab.labels,
      createdAt: now,
      leaseId: lease.id,
      expiresAt: Date.parse(lease.expiresAt),
      rollbackOnFailure: req.lab.rollbackOnFailure,
      rolledBack: false,
    };
    const created = await createScript.run(
      redis,
      [keys.lab(req.name), keys.labVms(req.name), keys.labEvents(req.name), keys.labs()],
      [req.name, JSON.stringify(labFields(record))],
    );
    if (Number(created) !== 1) {
      await leases.end(lease.id);
      throw new VirtfleetError("NAME_CLASH", `the lab name "${req.name}" is taken`, { field: "name" });
    }
    await redis.hset(keys.labVms(req.name), entries);
    await this.#event(req.name, { type: "state", lab: req.name, state: "creating", at: new Date(now).toISOString() });

    let batch: Awaited<ReturnType<typeof fleet.createBatch>>;
    try {
      batch = await fleet.createBatch(
        specs,
        {
          ...(req.lab.antiAffinity ? { group: `lab.${req.name}` } : {}),
          ...(owner.tenant === undefined ? {} : { tenant: owner.tenant }),
          ...(owner.quota === undefined ? {} : { quota: owner.quota }),
          ...(owner.maxBatches === undefined ? {} : { maxBatches: owner.maxBatches }),
        },
        items,
      );
    } catch (error) {
      // Nothing was asked for: the lab never was.
      await this.#remove(req.name);
      await leases.end(lease.id);
      throw error;
    }
    const m = redis.multi().hset(keys.lab(req.name), "batchId", batch.batchId);
    for (const item of batch.items) {
      const entry = parseVmEntry(entries[item.vm] ?? "");
      if (entry === undefined) continue;
      const next: LabVmEntry =
        item.jobId !== undefined
          ? { ...entry, jobId: item.jobId }
          : { ...entry, error: { code: item.error?.code ?? "INTERNAL", message: item.error?.message ?? "refused" } };
      m.hset(keys.labVms(req.name), item.vm, JSON.stringify(next));
    }
    await m.exec();
    this.#d.logger.info({ lab: req.name, vms: specs.length, batchId: batch.batchId, tenant: owner.tenant }, "lab up");
    return this.require(req.name, {});
  }

  /** A lab with its VMs (job phase, host, addresses, error), or undefined (also another tenant's). */
  async get(nameInput: unknown, scope: TenantScope = {}): Promise<LabView | undefined> {
    const name = LabName.safeParse(nameInput);
    if (!name.success) return undefined;
    const lab = await this.#read(name.data);
    if (lab === undefined || !visible(lab.tenant, scope)) return undefined;
    return this.#view(lab, await this.#observe(lab));
  }

  /** A lab, or NOT_FOUND naming `name`. */
  async require(name: string, scope: TenantScope = {}): Promise<LabView> {
    const view = await this.get(name, scope);
    if (view === undefined) throw new VirtfleetError("NOT_FOUND", `no lab "${name}"`, { field: "name" });
    return view;
  }

  /** Every lab the scope sees, by name. */
  async list(scope: TenantScope = {}): Promise<LabView[]> {
    const names = (await this.#d.redis.smembers(this.#d.keys.labs())).sort();
    const views = await Promise.all(names.map((n) => this.get(n, scope)));
    return views.filter((v): v is LabView => v !== undefined);
  }

  /** Ends the lab's lease `byMs` from now (never past its maximum lifetime). */
  async extend(nameInput: unknown, byMs: number, scope: TenantScope = {}): Promise<LabView> {
    const name = parseOrThrow(LabName, nameInput, "name");
    const view = await this.require(name, scope);
    if (view.state === "expiring" || view.state === "gone" || view.rolledBack === true)
      throw new VirtfleetError("NOT_FOUND", `lab "${name}" is ${view.rolledBack ? "rolled back" : view.state}`, {
        field: "name",
      });
    await this.#d.leases.extend(view.leaseId, byMs);
    return this.require(name, scope);
  }

  /**
   * Takes the lab down: `expiring` while every VM is destroyed (running creates cancelled), then
   * `gone`; the lease ends. Safe to call again (a gone lab is left as it is).
   */
  async down(nameInput: unknown, scope: TenantScope = {}, why: "down" | "expired" = "down"): Promise<LabView> {
    const name = parseOrThrow(LabName, nameInput, "name");
    const before = await this.#read(name);
    if (before === undefined || !visible(before.tenant, scope))
      throw new VirtfleetError("NOT_FOUND", `no lab "${name}"`, { field: "name" });
    // What the VMs' jobs already say is recorded first (a lab that came up reads `ready` before
    // `expiring` in its events, whoever's tick came first).
    await this.sync(name);
    const lab = (await this.#read(name)) ?? before;
    const lease = await this.#d.leases.get(lab.leaseId);
    const at = Date.now();
    const reason = why === "expired" ? "the lab's lease expired" : "taken down by request";
    const derived = deriveState(lab, await this.#observe(lab));
    if (lab.state !== "gone") {
      if (derived.state === "failed" && derived.rolledBack) {
        await this.#transition(lab, ["creating", "failed"], "gone", { endedAt: at }, {});
      } else {
        await this.#transition(
          lab,
          ["creating", "ready", "failed"],
          "expiring",
          {
            reason: lab.reason ?? reason,
            expiresAt: lease === undefined ? lab.expiresAt : Math.min(at, Date.parse(lease.expiresAt)),
          },
          { reason },
        );
      }
      await this.#d.leases.end(lab.leaseId);
      this.#d.logger.info({ lab: name, why }, "lab down");
    }
    await this.sync(name);
    return this.require(name, scope);
  }

  /**
   * The lab's events (state changes, each VM's job reaching done/failed/destroyed) after `after`
   * (default: from the first), as they come; ends once the lab is gone (or failed and rolled back),
   * or when `signal` aborts. NOT_FOUND when there is no such lab. Uses its own connection.
   */
  async *events(
    nameInput: unknown,
    options: { after?: string; scope?: TenantScope; signal?: AbortSignal; blockMs?: number } = {},
  ): AsyncGenerator<StreamedLabEvent, void, undefined> {
    const name = parseOrThrow(LabName, nameInput, "name");
    await this.require(name, options.scope ?? {});
    const redis = this.#d.fleet.connect();
    const stop = () => redis.disconnect();
    options.signal?.addEventListener("abort", stop, { once: true });
    let last = options.after ?? "0";
    try {
      while (options.signal?.aborted !== true) {
        const read = (await redis.xread(
          "COUNT",
          100,
          "BLOCK",
          options.blockMs ?? 5000,
          "STREAMS",
          this.#d.keys.labEvents(name),
          last,
        )) as [string, [string, string[]][]][] | null;
        const entries = read?.[0]?.[1] ?? [];
        for (const [id, fields] of entries) {
          last = id;
          const parsed = LabEvent.safeParse(JSON.parse(fields[1] ?? "null"));
          if (!parsed.success) continue;
          yield { id, ...parsed.data };
          if (final(parsed.data)) return;
        }
        if (entries.length === 0) {
          // Nothing new: over when the lab is no longer there, or already ended (its last event is
          // written in the same step as its state, so a reader resumed past it has seen it).
          const lab = await this.#read(name);
          if (lab === undefined || lab.state === "gone" || lab.rolledBack) return;
        }
      }
    } catch (error) {
      if (options.signal?.aborted !== true) throw error;
    } finally {
      options.signal?.removeEventListener("abort", stop);
      redis.disconnect();
    }
  }

  /** Every lab's `sync` (LabWatcher's tick). */
  async syncAll(): Promise<void> {
    for (const name of await this.#d.redis.smembers(this.#d.keys.labs())) {
      try {
        await this.sync(name);
      } catch (error) {
        this.#d.logger.warn({ lab: name, err: error }, "lab: could not move it on (will retry)");
      }
    }
  }

  /**
   * Moves one lab on: announces its VMs' job ends, records its derived state, rolls a failed lab
   * back (when it should), tears an expiring one down, and removes its record `retentionMs` after it
   * ended. Idempotent; safe to run from several places at once.
   */
  async sync(name: string): Promise<void> {
    const { redis, keys, leases } = this.#d;
    let lab = await this.#read(name);
    if (lab === undefined) {
      await redis.srem(keys.labs(), name);
      return;
    }
    if (lab.endedAt !== undefined && Date.now() - lab.endedAt >= this.#retentionMs) {
      await this.#remove(name);
      return;
    }
    // Settled: nothing moves until `down` (or the lease's end) moves it again.
    if (
      lab.state === "gone" ||
      lab.state === "ready" ||
      (lab.state === "failed" && (lab.rolledBack || !lab.rollbackOnFailure))
    )
      return;
    let vms = await this.#observe(lab);
    await this.#announce(name, vms);
    const derived = deriveState(lab, vms);
    if (lab.state === "creating" && derived.state !== "creating") {
      await this.#transition(lab, ["creating"], derived.state, { reason: derived.reason }, { reason: derived.reason });
      if (derived.state === "failed") this.#d.logger.warn({ lab: name, reason: derived.reason }, "lab failed");
      lab = (await this.#read(name)) ?? lab;
    }
    const rollingBack = lab.state === "failed" && lab.rollbackOnFailure && !lab.rolledBack;
    if (rollingBack || lab.state === "expiring") {
      await this.#teardown(lab, vms);
      vms = await this.#observe(lab);
      await this.#announce(name, vms);
      if (vms.every(removed)) {
        if (rollingBack) {
          // The lease ends first: once a lab reads as rolled back, nothing of it is left.
          await leases.end(lab.leaseId);
          await this.#transition(
            lab,
            ["failed"],
            "failed",
            { rolledBack: "1", endedAt: Date.now() },
            {
              reason: lab.reason,
              rolledBack: true,
            },
          );
          this.#d.logger.info({ lab: name }, "lab rolled back");
        } else {
          await this.#transition(lab, ["expiring"], "gone", { endedAt: Date.now() }, { reason: lab.reason });
          this.#d.logger.info({ lab: name }, "lab gone");
        }
      }
    }
  }

  /** Puts each VM's job end not yet announced on the lab's stream (once: compare and set). */
  async #announce(name: string, vms: VmObservation[]): Promise<void> {
    for (const [i, o] of vms.entries()) {
      const end = vmAnnouncement(o);
      if (end === undefined || end === o.entry.announced) continue;
      const failure = end === "failed" || end === "cancelled" ? vmFailure(o) : undefined;
      const host = o.create?.hostId ?? o.record?.hostId;
      const next: LabVmEntry = { ...o.entry, announced: end };
      const done = await this.#updateVm(name, o, next, {
        type: "vm",
        lab: name,
        vm: o.name,
        phase: end,
        jobId: o.entry.jobId ?? "",
        ...(host ? { host } : {}),
        ...(failure === undefined ? {} : { error: { code: failure.code, message: failure.message } }),
        at: new Date().toISOString(),
      });
      if (done) vms[i] = { ...o, entry: next, raw: JSON.stringify(next) };
    }
  }

  /** One pass over the lab's VMs: cancels creates still running, destroys VMs that exist. */
  async #teardown(lab: LabRecord, vms: readonly VmObservation[]): Promise<void> {
    const now = Date.now();
    const stale = (at: number | undefined) => at === undefined || now - at >= this.#retryMs;
    for (const o of vms) {
      if (removed(o)) continue;
      const { entry } = o;
      try {
        if (entry.jobId === undefined) {
          // `up` stopped before its batch was asked for: only a VM the fleet records for this lab.
          if (o.record?.lab === lab.name && stale(entry.destroyAt)) await this.#destroy(lab, o, now);
          else if (o.record === undefined && now - lab.createdAt >= this.#retryMs)
            await this.#updateVm(lab.name, o, { ...entry, error: { code: "CANCELLED", message: "never asked for" } });
          continue;
        }
        const phase = o.create?.phase;
        if (phase !== undefined && phase !== "done") {
          if (!stale(entry.cancelAt)) continue;
          if (await this.#updateVm(lab.name, o, { ...entry, cancelAt: now })) {
            await this.#d.fleet.cancelJob(entry.jobId);
          }
          continue;
        }
        const destroyFailed = o.destroy?.phase === "failed" || o.destroy?.phase === "cancelled";
        if (
          entry.destroyAt === undefined ||
          destroyFailed ||
          (entry.destroyJobId === undefined && stale(entry.destroyAt))
        )
          await this.#destroy(lab, o, now);
      } catch (error) {
        this.#d.logger.warn(
          { lab: lab.name, vm: o.name, err: toErrorInfo(error) },
          "lab: could not remove a VM (will retry)",
        );
      }
    }
  }

  async #destroy(lab: LabRecord, o: VmObservation, now: number): Promise<void> {
    const { destroyJobId: _d, ...rest } = o.entry;
    const claimed: LabVmEntry = { ...rest, destroyAt: now };
    if (!(await this.#updateVm(lab.name, o, claimed))) return;
    const job = await this.#d.fleet.destroyVm(o.name);
    const after = { ...o, entry: claimed, raw: JSON.stringify(claimed) };
    await this.#updateVm(lab.name, after, { ...claimed, destroyJobId: job.id });
  }

  /** The lab's VMs as the fleet sees them. */
  async #observe(lab: LabRecord): Promise<VmObservation[]> {
    const { redis, keys, fleet } = this.#d;
    const raw = await redis.hgetall(keys.labVms(lab.name));
    const out = await Promise.all(
      Object.entries(raw).map(async ([name, json]): Promise<VmObservation | undefined> => {
        const entry = parseVmEntry(json);
        if (entry === undefined) return undefined;
        const [create, destroy, record] = await Promise.all([
          entry.jobId === undefined ? undefined : fleet.log.getJob(entry.jobId),
          entry.destroyJobId === undefined ? undefined : fleet.log.getJob(entry.destroyJobId),
          fleet.vms.get(name),
        ]);
        return {
          name,
          entry,
          raw: json,
          ...(create === undefined
            ? {}
            : { create: { phase: create.phase, hostId: create.hostId, error: create.error } }),
          ...(destroy === undefined ? {} : { destroy: { phase: destroy.phase, error: destroy.error } }),
          ...(record === undefined
            ? {}
            : {
                record: {
                  jobId: record.jobId,
                  hostId: record.hostId,
                  addresses: record.addresses,
                  lab: record.labels[LAB_LABEL],
                },
              }),
        };
      }),
    );
    return out.filter((o): o is VmObservation => o !== undefined).sort(byName);
  }

  async #view(lab: LabRecord, vms: readonly VmObservation[]): Promise<LabView> {
    const derived = deriveState(lab, vms);
    const lease = await this.#d.leases.get(lab.leaseId);
    return {
      name: lab.name,
      state: derived.state,
      ...(lab.tenant === undefined ? {} : { tenant: lab.tenant }),
      labels: lab.labels,
      createdAt: new Date(lab.createdAt).toISOString(),
      expiresAt: lease?.expiresAt ?? new Date(lab.expiresAt).toISOString(),
      leaseId: lab.leaseId,
      ...(lab.batchId === undefined ? {} : { batchId: lab.batchId }),
      ...(derived.reason === undefined ? {} : { reason: derived.reason }),
      ...(derived.state === "failed" ? { rolledBack: derived.rolledBack } : {}),
      vms: vms.map((o) => {
        const host = o.create?.hostId || o.record?.hostId || undefined;
        const error = vmFailure(o);
        return {
          name: o.name,
          template: o.entry.template,
          templateVersion: o.entry.templateVersion,
          jobId: o.entry.jobId ?? "",
          phase: vmPhase(o),
          ...(host === undefined ? {} : { host }),
          addresses: o.record?.addresses ?? [],
          ...(error === undefined ? {} : { error: { code: error.code, message: error.message } }),
        };
      }),
    };
  }

  async #read(name: string): Promise<LabRecord | undefined> {
    return parseLabFields(await this.#d.redis.hgetall(this.#d.keys.lab(name)));
  }

  /** Compare-and-set of the lab's state, with its event; false when someone else moved it first. */
  async #transition(
    lab: LabRecord,
    from: LabState[],
    to: LabState,
    fields: Record<string, string | number | undefined>,
    event: { reason?: string | undefined; rolledBack?: boolean },
  ): Promise<boolean> {
    const flat: (string | number)[] = [];
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) flat.push(k, v);
    const e: LabEvent = {
      type: "state",
      lab: lab.name,
      state: to,
      ...(event.reason === undefined ? {} : { reason: event.reason }),
      ...(event.rolledBack === undefined ? {} : { rolledBack: event.rolledBack }),
      at: new Date().toISOString(),
    };
    const moved = await transitionScript.run(
      this.#d.redis,
      [this.#d.keys.lab(lab.name), this.#d.keys.labEvents(lab.name)],
      [from.join(","), to, JSON.stringify(e), this.#maxLen, ...flat],
    );
    return Number(moved) === 1;
  }

  /** Compare-and-set of a VM's entry (with an event when given); false when it changed meanwhile. */
  async #updateVm(lab: string, o: VmObservation, next: LabVmEntry, event?: LabEvent): Promise<boolean> {
    const r = await vmUpdateScript.run(
      this.#d.redis,
      [this.#d.keys.labVms(lab), this.#d.keys.labEvents(lab)],
      [
        o.name,
        o.raw ?? JSON.stringify(o.entry),
        JSON.stringify(next),
        event === undefined ? "" : JSON.stringify(event),
        this.#maxLen,
      ],
    );
    return Number(r) === 1;
  }

  async #event(lab: string, e: LabEvent): Promise<void> {
    await this.#d.redis.xadd(this.#d.keys.labEvents(lab), "MAXLEN", "~", this.#maxLen, "*", "e", JSON.stringify(e));
  }

  async #remove(name: string): Promise<void> {
    const { redis, keys } = this.#d;
    await redis.multi().del(keys.lab(name), keys.labVms(name), keys.labEvents(name)).srem(keys.labs(), name).exec();
  }
}

/** The last event of a lab's stream. */
function final(e: LabEvent): boolean {
  return e.type === "state" && (e.state === "gone" || (e.state === "failed" && e.rolledBack === true));
}

/** A tenant sees its own labs only; no tenant (an operator, the CLI on Redis) sees every lab. */
function visible(owner: string | undefined, scope: TenantScope): boolean {
  return scope.tenant === undefined || owner === scope.tenant;
}
