import {
  parseOrThrow,
  stableStringify,
  TemplateName,
  TemplateSpec,
  type TemplateView,
  VirtfleetError,
} from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { LabKeys } from "../keys.js";
import { LuaScript } from "../lua.js";

const put = new LuaScript("template-put", 2);

/** Who asks: an API tenant sees and changes only its own templates (and those with no tenant). */
export interface TenantScope {
  tenant?: string | undefined;
}

/**
 * Named, versioned VM specs in Redis. `put` of a changed spec makes a new version; what was made
 * from an older version is stale (pools replace their unclaimed VMs of it).
 */
export class TemplateStore {
  readonly #redis: Redis;
  readonly #keys: LabKeys;

  constructor(redis: Redis, keys: LabKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Stores a template (`spec` checked by TemplateSpec: INVALID_SPEC naming the field, nothing stored). */
  async put(
    nameInput: unknown,
    specInput: unknown,
    scope: TenantScope = {},
  ): Promise<TemplateView & { changed: boolean }> {
    const name = parseOrThrow(TemplateName, nameInput, "name");
    const spec = parseOrThrow(TemplateSpec, specInput);
    const [version, second] = (await put.run(
      this.#redis,
      [this.#keys.template(name), this.#keys.templates()],
      [name, stableStringify(spec), scope.tenant ?? "", new Date().toISOString()],
    )) as [number, number | string];
    if (version === -1) throw new VirtfleetError("NAME_CLASH", `template "${name}" is taken`, { field: "name" });
    const view = await this.get(name, scope);
    if (view === undefined) throw new VirtfleetError("INTERNAL", `template "${name}" vanished while stored`);
    return { ...view, changed: second === 1 };
  }

  /** A template, or undefined (also for another tenant's). */
  async get(nameInput: unknown, scope: TenantScope = {}): Promise<TemplateView | undefined> {
    const name = TemplateName.safeParse(nameInput);
    if (!name.success) return undefined;
    const h = await this.#redis.hgetall(this.#keys.template(name.data));
    if (h.version === undefined || h.spec === undefined) return undefined;
    if (!visible(h.tenant, scope)) return undefined;
    return {
      name: name.data,
      version: Number(h.version),
      spec: TemplateSpec.parse(JSON.parse(h.spec)),
      ...(h.tenant ? { tenant: h.tenant } : {}),
      createdAt: h.createdAt ?? "",
      updatedAt: h.updatedAt ?? "",
    };
  }

  /** A template, or NOT_FOUND naming `field`. */
  async require(name: string, scope: TenantScope = {}, field = "template"): Promise<TemplateView> {
    const view = await this.get(name, scope);
    if (view === undefined) throw new VirtfleetError("NOT_FOUND", `no template "${name}"`, { field });
    return view;
  }

  /** Every template the scope sees, by name. */
  async list(scope: TenantScope = {}): Promise<TemplateView[]> {
    const names = (await this.#redis.smembers(this.#keys.templates())).sort();
    const views = await Promise.all(names.map((n) => this.get(n, scope)));
    return views.filter((v): v is TemplateView => v !== undefined);
  }

  /**
   * Removes a template. NOT_FOUND if there is none; FORBIDDEN for a tenant and a shared template;
   * NAME_CLASH while a pool still makes VMs from it (remove or change the pool first). VMs made
   * from it are left as they are.
   */
  async remove(nameInput: unknown, scope: TenantScope = {}): Promise<void> {
    const name = parseOrThrow(TemplateName, nameInput, "name");
    const view = await this.get(name, scope);
    if (view === undefined) throw new VirtfleetError("NOT_FOUND", `no template "${name}"`, { field: "name" });
    // A tenant reads the shared templates (made with no tenant) but may not remove them.
    if (scope.tenant !== undefined && view.tenant !== scope.tenant)
      throw new VirtfleetError("FORBIDDEN", `template "${name}" is shared: only an operator may remove it`, {
        field: "name",
      });
    const pools = await this.#redis.smembers(this.#keys.pools());
    const users: string[] = [];
    for (const pool of pools)
      if ((await this.#redis.hget(this.#keys.pool(pool), "template")) === name) users.push(pool);
    if (users.length > 0)
      throw new VirtfleetError("NAME_CLASH", `template "${name}" is used by pool ${users.join(", ")}`, {
        field: "name",
      });
    await this.#redis.multi().del(this.#keys.template(name)).srem(this.#keys.templates(), name).exec();
  }
}

function visible(owner: string | undefined, scope: TenantScope): boolean {
  return scope.tenant === undefined || owner === undefined || owner === "" || owner === scope.tenant;
}
