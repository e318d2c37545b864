/**
 * Every package the lockfile installs runs on the oldest Node the project claims (the root
 * package.json's `engines.node`): a dependency whose latest major needs a newer Node (cookie 2,
 * execa 10, vitest 5, ...) fails here by name instead of warning in `npm ci` and crashing later.
 */
import { readFileSync } from "node:fs";
import semver from "semver";
import { describe, expect, it } from "vitest";

const root = new URL("../../", import.meta.url);
const readJson = (file: string) => JSON.parse(readFileSync(new URL(file, root), "utf8")) as Record<string, unknown>;

interface LockedPackage {
  version?: string;
  engines?: unknown;
  optional?: boolean;
  cpu?: string[];
  os?: string[];
  libc?: string[];
}

/** A locked package's Node range, when it declares one (engines is sometimes a list of strings). */
function nodeRange(p: LockedPackage): string | undefined {
  const e = p.engines;
  if (e === null || typeof e !== "object" || Array.isArray(e)) return undefined;
  const node = (e as { node?: unknown }).node;
  return typeof node === "string" ? node : undefined;
}

/** This machine's C library, as npm matches a package's `libc` ("glibc" or "musl"). */
const libc =
  (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime ===
  undefined
    ? "musl"
    : "glibc";

/** Optional native builds for other platforms are never installed here (npm skips them). */
function installsHere(p: LockedPackage): boolean {
  if (p.optional !== true) return true;
  return (
    (p.cpu === undefined || p.cpu.includes(process.arch)) &&
    (p.os === undefined || p.os.includes(process.platform)) &&
    (p.libc === undefined || p.libc.includes(libc))
  );
}

describe("engines", () => {
  const claimed = (readJson("package.json").engines as { node: string }).node;
  const oldest = semver.minVersion(claimed);

  it("the project claims a Node 20 it runs on", () => {
    expect(oldest?.major).toBe(20);
    expect(semver.satisfies(process.version, claimed)).toBe(true);
  });

  it("every installed package accepts the oldest Node the project claims", () => {
    const packages = readJson("package-lock.json").packages as Record<string, LockedPackage>;
    const refusing = Object.entries(packages)
      .filter(([name, p]) => name !== "" && installsHere(p))
      .flatMap(([name, p]) => {
        const range = nodeRange(p);
        return range === undefined || semver.satisfies(oldest?.version ?? "", range)
          ? []
          : [`${name.replace(/^.*node_modules\//, "")}@${p.version ?? "?"} needs node ${range}`];
      });
    expect(refusing).toEqual([]);
  });
});
