import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MARKER_FILE, readMarker, writeMarker } from "./vm-marker.js";

const roots: string[] = [];
afterEach(async () => {
  for (const r of roots.splice(0)) await rm(r, { recursive: true, force: true });
});

async function vmDir(name: string): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), "hs-marker-"));
  roots.push(root);
  const dir = path.join(root, name);
  await mkdir(dir);
  return dir;
}

describe("VM folder marker", () => {
  const marker = { fleet: "5f3bce27-2dbc-46e1-803e-690c1277af3c", host: "host-1", job: "job-1", vm: "budgie" };

  it("round-trips", async () => {
    const dir = await vmDir("budgie");
    await writeMarker(dir, marker);
    expect(await readMarker(dir)).toEqual(marker);
  });

  it("a folder without one, or with a broken one, is not provably virtfleet's", async () => {
    const dir = await vmDir("budgie");
    expect(await readMarker(dir)).toBeUndefined();
    await writeFile(path.join(dir, MARKER_FILE), "{not json");
    expect(await readMarker(dir)).toBeUndefined();
    await writeFile(path.join(dir, MARKER_FILE), JSON.stringify({ ...marker, job: "" }));
    expect(await readMarker(dir)).toBeUndefined();
  });

  it("a marker naming another VM (a copied folder) does not count", async () => {
    const dir = await vmDir("canary");
    await writeMarker(dir, marker);
    expect(await readMarker(dir)).toBeUndefined();
  });
});
