import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  type ApiToken,
  ApiTokens,
  DEFAULT_RATE_LIMIT_PER_MIN,
  type NetworkAllowList,
  parseNetworkAllowList,
  parseOrThrow,
  type Scope,
  ValidationError,
} from "@virtfleet/core";
import { problem } from "./problem.js";

/** Who is calling: a token from the tokens file. */
export interface Principal {
  tokenId: string;
  tenant: string;
  scopes: ReadonlySet<Scope>;
  rateLimit: number;
  /** The networks this token may attach guests to (its `networks`; none by default). */
  networks: NetworkAllowList;
}

export interface TenantQuota {
  vms?: number;
  memoryMiB?: number;
  vcpus?: number;
  diskGiB?: number;
  batches?: number;
}

/** A token's SHA-256 (hex): how the tokens file and dashboard sessions refer to it. */
export const tokenSha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const sha256 = tokenSha256;

/** Bearer tokens, by their SHA-256; tenants' quotas. */
export class TokenStore {
  readonly #byHash = new Map<string, Principal>();
  readonly #quotas = new Map<string, TenantQuota>();
  readonly #webhookSecrets = new Map<string, string>();

  constructor(tokens: readonly ApiToken[]) {
    for (const [i, t] of tokens.entries()) {
      const hash = t.tokenSha256 ?? sha256(t.token as string);
      this.#byHash.set(hash, {
        tokenId: t.id,
        tenant: t.tenant,
        scopes: new Set(t.scopes),
        rateLimit: t.rateLimit ?? DEFAULT_RATE_LIMIT_PER_MIN,
        networks: parseNetworkAllowList(t.networks ?? [], `tokens.${i}.networks`),
      });
      if (t.webhookSecret !== undefined) {
        const earlier = this.#webhookSecrets.get(t.tenant);
        if (earlier !== undefined && earlier !== t.webhookSecret)
          throw new ValidationError([
            { field: `tokens.${i}.webhookSecret`, message: `differs from another token's of tenant ${t.tenant}` },
          ]);
        this.#webhookSecrets.set(t.tenant, t.webhookSecret);
      }
      if (t.quota !== undefined && !this.#quotas.has(t.tenant)) {
        this.#quotas.set(t.tenant, {
          ...(t.quota.vms === undefined ? {} : { vms: t.quota.vms }),
          ...(t.quota.memoryMiB === undefined ? {} : { memoryMiB: t.quota.memoryMiB }),
          ...(t.quota.vcpus === undefined ? {} : { vcpus: t.quota.vcpus }),
          ...(t.quota.diskGiB === undefined ? {} : { diskGiB: t.quota.diskGiB }),
          ...(t.quota.batches === undefined ? {} : { batches: t.quota.batches }),
        });
      }
    }
  }

  /** Reads and checks the JSON tokens file (`VIRTFLEET_API_TOKENS_FILE`). */
  static async load(file: string): Promise<TokenStore> {
    const raw = JSON.parse(await readFile(file, "utf8")) as unknown;
    return new TokenStore(parseOrThrow(ApiTokens, raw, "tokens"));
  }

  /** The caller of an `Authorization` header, or UNAUTHENTICATED. */
  authenticate(header: string | undefined): Principal {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
    if (m?.[1] === undefined) throw problem("UNAUTHENTICATED", "a bearer token is required");
    const principal = this.#byHash.get(sha256(m[1]));
    if (principal === undefined) throw problem("UNAUTHENTICATED", "unknown token");
    return principal;
  }

  /** The caller of a token given in clear (a dashboard sign-in), or undefined. */
  check(token: string): { tokenSha256: string; principal: Principal } | undefined {
    const hash = sha256(token);
    const principal = this.#byHash.get(hash);
    return principal === undefined ? undefined : { tokenSha256: hash, principal };
  }

  /** The caller of a token by its SHA-256 (a dashboard session's), or undefined once the token is gone. */
  byTokenSha256(hash: string): Principal | undefined {
    return this.#byHash.get(hash);
  }

  quota(tenant: string): TenantQuota {
    return this.#quotas.get(tenant) ?? {};
  }

  /** The tenant's own webhook HMAC key, when its tokens name one. */
  webhookSecret(tenant: string): string | undefined {
    return this.#webhookSecrets.get(tenant);
  }
}

/** Throws FORBIDDEN unless the caller has the scope (or admin). */
export function requireScope(p: Principal, scope: Scope): void {
  if (!p.scopes.has(scope) && !p.scopes.has("admin")) throw problem("FORBIDDEN", `this token lacks the ${scope} scope`);
}

/** True when the caller may see the resource of `tenant`. */
export function canSee(p: Principal, tenant: string | undefined): boolean {
  return p.scopes.has("admin") || tenant === p.tenant;
}
