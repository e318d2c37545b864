import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { writeSeedIso, xorrisofsArgs } from "./seed-iso.js";

describe("xorrisofsArgs", () => {
  it("makes a cidata volume with Joliet and Rock Ridge names from the files given", () => {
    expect(xorrisofsArgs("/vm/cidata.iso", ["/vm/s/user-data", "/vm/s/meta-data"])).toEqual([
      "-output",
      "/vm/cidata.iso",
      "-volid",
      "cidata",
      "-joliet",
      "-rock",
      "-input-charset",
      "utf8",
      "/vm/s/user-data",
      "/vm/s/meta-data",
    ]);
  });
});

describe("writeSeedIso (real xorrisofs)", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("writes an ISO holding each document at its root and leaves no staging folder", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "ci-seed-"));
    const output = path.join(dir, "cidata.iso");
    await writeSeedIso({
      dir,
      output,
      documents: { "user-data": "#cloud-config\n", "meta-data": "instance-id: j1\n", "network-config": "version: 2\n" },
      xorrisofs: async (args) => execFileSync("xorrisofs", args, { stdio: "pipe" }),
    });
    expect(await readdir(dir)).toEqual(["cidata.iso"]);
    const volid = execFileSync("xorriso", ["-indev", output, "-pvd_info"], { stdio: "pipe" }).toString();
    expect(volid).toMatch(/Volume Id\s*:\s*cidata/);
    const out = path.join(dir, "x");
    execFileSync("xorriso", ["-osirrox", "on", "-indev", output, "-extract", "/", out], { stdio: "pipe" });
    expect((await readdir(out)).sort()).toEqual(["meta-data", "network-config", "user-data"]);
    expect(await readFile(path.join(out, "meta-data"), "utf8")).toBe("instance-id: j1\n");
  });

  it("removes the staging folder when xorrisofs fails", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "ci-seed-"));
    await expect(
      writeSeedIso({
        dir,
        output: path.join(dir, "cidata.iso"),
        documents: { "user-data": "#cloud-config\n", "meta-data": "instance-id: j1\n" },
        xorrisofs: async () => {
          throw new Error("boom");
        },
      }),
    ).rejects.toThrow("boom");
    expect(await readdir(dir)).toEqual([]);
  });
});
