import { execFile } from "node:child_process";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Ajv } from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { repo } from "./harness.js";

/**
 * deploy/compose.yaml, without a container engine (none runs here): valid against the Compose
 * Specification's JSON schema (vendored in test/fixtures/compose-spec), and every file it names exists
 * once `sentinel-lab.sh --render` has generated the secrets, with ports and users that agree with them.
 */
const run = promisify(execFile);
const DEPLOY = path.join(repo, "deploy");
const COMPOSE = path.join(DEPLOY, "compose.yaml");

type Doc = Record<string, unknown>;
let lab: string;
let tokens: string;
let validate: (doc: unknown) => { valid: boolean; errors: string[] };

beforeAll(async () => {
  lab = await mkdtemp(path.join(os.tmpdir(), "hd-compose-lab-"));
  tokens = path.join(lab, "api-tokens.json");
  await writeFile(tokens, "[]");
  await run("bash", [path.join(DEPLOY, "redis/sentinel-lab.sh"), "--render", "--dir", lab, "--port", "6379"]);
  const schema = JSON.parse(await readFile(path.join(repo, "test/fixtures/compose-spec/compose-spec.json"), "utf8"));
  // The schema names its meta-schema by an https URL Ajv does not carry; it is plain draft-07.
  const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: false });
  const check = ajv.compile(schema);
  validate = (doc) => {
    const valid = check(doc);
    return { valid, errors: (check.errors ?? []).map((e) => `${e.instancePath} ${e.message}`) };
  };
}, 30_000);

afterAll(async () => {
  await rm(lab, { recursive: true, force: true });
});

/** Compose's `${VAR:-default}` interpolation (the only form the file uses). */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{([A-Z_]+):-([^}]*)\}/g, (_, name: string, fallback: string) => env[name] ?? fallback);
}

async function composeDoc(): Promise<Doc> {
  const text = await readFile(COMPOSE, "utf8");
  return parse(interpolate(text, { VIRTFLEET_REDIS_LAB: lab, VIRTFLEET_API_TOKENS_FILE: tokens }), {
    merge: true,
  }) as Doc;
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

describe("deploy/compose.yaml", () => {
  it("is valid against the Compose Specification schema, which does refuse a broken file", async () => {
    const doc = await composeDoc();
    expect(validate(doc)).toEqual({ valid: true, errors: [] });
    const services = doc.services as Record<string, Doc>;
    // The schema is not a pushover: a misspelt key and a wrong type are errors.
    const broken = structuredClone(doc) as { services: Record<string, Doc> };
    (broken.services.api as Doc).enviroment = { X: "1" };
    (broken.services["redis-master"] as Doc).restart = 3;
    const result = validate(broken);
    expect(result.valid).toBe(false);
    expect(result.errors.join("\n")).toMatch(/enviroment|additional/);
    expect(Object.keys(services).sort()).toEqual(
      ["api", "redis-master", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"].sort(),
    );
  });

  it("names only files that exist (the configs, the rendered secrets, the API's build) and agrees with what sentinel-lab.sh renders", async () => {
    const doc = await composeDoc();
    const files = [
      ...Object.values(doc.configs as Record<string, { file: string }>).map((c) => c.file),
      ...Object.values(doc.secrets as Record<string, { file: string }>).map((s) => s.file),
    ];
    expect(files.length).toBe(10);
    for (const file of files)
      expect({ file, exists: await exists(path.resolve(DEPLOY, file)) }).toEqual({ file, exists: true });

    const services = doc.services as Record<string, Doc>;
    const api = services.api as {
      volumes: { source: string }[];
      command: string[];
      environment: Record<string, string>;
    };
    const checkout = path.resolve(DEPLOY, api.volumes[0]?.source ?? "");
    expect(checkout).toBe(repo);
    expect(await exists(path.join(checkout, api.command[1] ?? ""))).toBe(true);
    // Every secret and config a service uses is declared at the top level.
    for (const [name, service] of Object.entries(services)) {
      for (const s of (service.secrets ?? []) as (string | { source: string })[]) {
        const secret = typeof s === "string" ? s : s.source;
        expect({ name, secret, declared: Object.hasOwn(doc.secrets as Doc, secret) }).toEqual({
          name,
          secret,
          declared: true,
        });
      }
      for (const c of (service.configs ?? []) as { source: string }[])
        expect(Object.hasOwn(doc.configs as Doc, c.source)).toBe(true);
    }
    // The API's sentinels are the ports the rendered sentinel configs listen on; its users exist.
    const ports = await Promise.all(
      [1, 2, 3].map(async (i) => {
        const conf = await readFile(path.join(lab, `sentinel-${i}`, "sentinel.conf"), "utf8");
        return `127.0.0.1:${/^port (\d+)$/m.exec(conf)?.[1]}`;
      }),
    );
    expect(api.environment.REDIS_SENTINELS).toBe(ports.join(","));
    const acl = await readFile(path.join(lab, "users.acl"), "utf8");
    expect(acl).toMatch(new RegExp(`^user ${api.environment.REDIS_USERNAME} on `, "m"));
    const sentinelConf = await readFile(path.join(lab, "sentinel-1", "sentinel.conf"), "utf8");
    expect(sentinelConf).toMatch(new RegExp(`^user ${api.environment.REDIS_SENTINEL_USERNAME} on `, "m"));
    expect(sentinelConf).toMatch(/^sentinel monitor virtfleet 127\.0\.0\.1 6379 2$/m);
    // No worker in a container: workers run on the KVM hosts.
    expect(Object.keys(services).some((s) => s.includes("worker"))).toBe(false);
    expect(await readFile(COMPOSE, "utf8")).toMatch(/WORKERS ARE NOT HERE/);
  });
});
