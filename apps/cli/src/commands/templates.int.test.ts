import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LabKeys } from "@virtfleet/labs";
import { afterAll, describe, expect } from "vitest";
import { startApi } from "../../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";

const CLI = path.resolve(import.meta.dirname, "../../dist/main.js");
const TOKEN = "tp-cli-token-0123456789abcdef";

const dir = mkdtempSync(path.join(tmpdir(), "tp-templates-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

const WEB_YAML = `# a small web server
memoryMiB: 512
vcpus: 1
disks:
  - sizeGiB: 4
    backing: debian12.qcow2
install:
  method: import
networks: []
guestReady:
  strategy: agent
labels:
  role: web
`;

/** The same template as WEB_YAML, as JSON (keys in another order). */
const WEB_JSON = JSON.stringify({
  labels: { role: "web" },
  guestReady: { strategy: "agent" },
  vcpus: 1,
  memoryMiB: 512,
  disks: [{ backing: "debian12.qcow2", sizeGiB: 4 }],
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

type Env = Record<string, string>;

/** Runs the built CLI to its end. */
function run(env: Env, ...args: string[]): Promise<Run> {
  const { VIRTFLEET_API_URL: _a, VIRTFLEET_TOKEN: _t, REDIS_URL: _r, ...base } = process.env;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...base, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stdout, stderr });
    });
  });
}

/** The CLI straight on Redis, or through an API server on the same Redis. */
async function backend(
  kind: "redis" | "api",
  redisUrl: string,
  prefix: string,
): Promise<{ env: Env; close: () => Promise<void> }> {
  if (kind === "redis") return { env: { REDIS_URL: redisUrl, VIRTFLEET_PREFIX: prefix }, close: async () => {} };
  const api = await startApi(redisUrl, prefix, [
    { id: "tp-cli", token: TOKEN, scopes: ["vms:read", "vms:write"], tenant: "acme" },
  ]);
  return { env: { VIRTFLEET_API_URL: api.base, VIRTFLEET_TOKEN: TOKEN }, close: api.close };
}

// Each test spawns the CLI several times (~1 s each on a quiet 2-core machine, several under load).
describe.each(["redis", "api"] as const)("virtfleet templates (%s)", { timeout: 90_000 }, (kind) => {
  test("put (YAML, then the same as JSON, then a change), ls, show, rm", async ({ redisUrl, prefix }) => {
    const b = await backend(kind, redisUrl, prefix);
    try {
      const yamlFile = file(`web-${kind}.yaml`, WEB_YAML);
      const jsonFile = file(`web-${kind}.json`, WEB_JSON);
      expect(await run(b.env, "templates", "put", "web", "-f", yamlFile)).toMatchObject({
        code: 0,
        stdout: "template web v1 (new)\n",
      });
      expect(await run(b.env, "templates", "put", "web", "--file", jsonFile)).toMatchObject({
        code: 0,
        stdout: "template web v1 (unchanged)\n",
      });
      const bigger = file(`web2-${kind}.yaml`, WEB_YAML.replace("memoryMiB: 512", "memoryMiB: 1024"));
      expect(await run(b.env, "templates", "put", "web", "-f", bigger)).toMatchObject({
        code: 0,
        stdout: "template web v2 (changed: VMs made from v1 are now stale)\n",
      });
      const putJson = await run(b.env, "templates", "put", "web", "-f", bigger, "--json");
      expect(JSON.parse(putJson.stdout)).toMatchObject({ name: "web", version: 2, changed: false });

      const ls = await run(b.env, "templates", "ls");
      expect(ls.code).toBe(0);
      const [header, row] = ls.stdout.trim().split("\n");
      expect(header?.split(/\s{2,}/)).toEqual(["NAME", "VERSION", "MEMORY MiB", "VCPUS", "IMAGE", "UPDATED"]);
      expect(row?.split(/\s{2,}/).slice(0, 5)).toEqual(["web", "2", "1024", "1", "debian12.qcow2"]);
      const lsJson = JSON.parse((await run(b.env, "templates", "ls", "--json")).stdout) as { name: string }[];
      expect(lsJson).toEqual([expect.objectContaining({ name: "web", version: 2, spec: expect.any(Object) })]);

      // show prints YAML that put takes back unchanged.
      const show = await run(b.env, "templates", "show", "web");
      expect(show.code).toBe(0);
      expect(show.stdout).toMatch(/^# template web v2/);
      expect(show.stdout).toContain("memoryMiB: 1024");
      expect(show.stdout).toContain("backing: debian12.qcow2");
      const roundTrip = file(`shown-${kind}.yaml`, show.stdout);
      expect((await run(b.env, "templates", "put", "web", "-f", roundTrip)).stdout).toBe(
        "template web v2 (unchanged)\n",
      );
      const showJson = JSON.parse((await run(b.env, "templates", "show", "web", "--json")).stdout);
      expect(showJson).toMatchObject({ name: "web", version: 2, spec: { memoryMiB: 1024, vcpus: 1 } });

      expect(await run(b.env, "templates", "rm", "web")).toMatchObject({ code: 0, stdout: "template web removed\n" });
      const gone = await run(b.env, "templates", "show", "web");
      expect(gone.code).toBe(1);
      expect(gone.stderr).toContain("NOT_FOUND");
      expect((await run(b.env, "templates", "rm", "web")).code).toBe(1);
      expect((await run(b.env, "templates", "ls", "--json")).stdout.trim()).toBe("[]");
    } finally {
      await b.close();
    }
  });

  test("a bad field is named (with the file), exit 2, and nothing is stored", async ({ redisUrl, prefix, redis }) => {
    const b = await backend(kind, redisUrl, prefix);
    const keys = new LabKeys(prefix);
    try {
      const bad = file(`bad-${kind}.yaml`, WEB_YAML.replace("vcpus: 1", "vcpus: 0"));
      const r = await run(b.env, "templates", "put", "web", "-f", bad);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`-f ${bad}: vcpus:`);
      expect(r.stdout).toBe("");
      const asJson = await run(b.env, "templates", "put", "web", "-f", bad, "--json");
      expect(asJson.code).toBe(2);
      expect(JSON.parse(asJson.stdout)).toMatchObject({ error: { code: "INVALID_SPEC", field: "vcpus", file: bad } });

      const nested = file(`nested-${kind}.json`, JSON.stringify({ ...JSON.parse(WEB_JSON), disks: [{ sizeGiB: -1 }] }));
      const n = await run(b.env, "templates", "put", "web", "-f", nested);
      expect(n.code).toBe(2);
      expect(n.stderr).toContain("disks.0.sizeGiB");

      const missing = await run(b.env, "templates", "put", "web", "-f", path.join(dir, "nope.yaml"));
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/-f: cannot read .*nope\.yaml/);

      const notYaml = await run(b.env, "templates", "put", "web", "-f", file(`broken-${kind}.yaml`, "vcpus: [1\n"));
      expect(notYaml.code).toBe(2);
      expect(notYaml.stderr).toContain("is not valid YAML or JSON");

      const badName = await run(b.env, "templates", "put", "Web_1", "-f", file(`ok-${kind}.yaml`, WEB_YAML));
      expect(badName.code).toBe(2);
      expect(badName.stderr).toContain("NAME");

      expect((await run(b.env, "templates", "put", "web")).code).toBe(2); // -f is required
      expect(await redis.exists(keys.template("web"), keys.template("Web_1"), keys.templates())).toBe(0);
    } finally {
      await b.close();
    }
  });

  test("rm is refused (exit 1, NAME_CLASH) while a pool makes VMs from the template", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const b = await backend(kind, redisUrl, prefix);
    const keys = new LabKeys(prefix);
    try {
      expect((await run(b.env, "templates", "put", "web", "-f", file(`p-${kind}.yaml`, WEB_YAML))).code).toBe(0);
      await redis.sadd(keys.pools(), "ci");
      await redis.hset(keys.pool("ci"), { name: "ci", template: "web" });
      const r = await run(b.env, "templates", "rm", "web", "--json");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("NAME_CLASH");
      expect(r.stderr).toContain("ci");
      expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: "NAME_CLASH" } });
      expect(await redis.sismember(keys.templates(), "web")).toBe(1);
    } finally {
      await b.close();
    }
  });
});
