import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tailLines } from "./console-tail.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function file(content: string): Promise<string> {
  dir = await mkdtemp(path.join(tmpdir(), "hb-console-"));
  const p = path.join(dir, "console.log");
  await writeFile(p, content);
  return p;
}

describe("tailLines", () => {
  it("answers the last lines without carriage returns or the final newline's empty line", async () => {
    const p = await file("one\r\ntwo\r\nthree\r\n");
    expect((await tailLines(p, 2)).lines).toEqual(["two", "three"]);
    expect((await tailLines(p, 50)).lines).toEqual(["one", "two", "three"]);
  });

  it("keeps a last line without a newline (a prompt) and answers the file's mtime", async () => {
    const p = await file("booted\nlogin: ");
    const tail = await tailLines(p, 5);
    expect(tail.lines).toEqual(["booted", "login: "]);
    expect(tail.mtime).toBeInstanceOf(Date);
  });

  it("reads only the end of a big file and drops the line the window cuts", async () => {
    const p = await file(`${"x".repeat(100)}\nabcdefgh\nlast\n`);
    // The window (12 bytes) starts inside "abcdefgh": that partial line is not answered.
    expect((await tailLines(p, 10, 12)).lines).toEqual(["last"]);
    expect((await tailLines(p, 10, 14)).lines).toEqual(["abcdefgh", "last"]);
  });

  it("answers no lines for an empty file", async () => {
    expect((await tailLines(await file(""), 10)).lines).toEqual([]);
  });
});
