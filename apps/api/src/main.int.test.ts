import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FleetClient } from "@virtfleet/fleet";
import { describe, expect } from "vitest";
import { openSse, tinySpec } from "../../../test/fixtures/api-streams.js";
import { hostUp } from "../../../test/fixtures/host-status.js";
import { freePort } from "../../../test/fixtures/redis-server.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

const BIN = fileURLToPath(new URL("../bin/virtfleet-api.js", import.meta.url));
const TOKEN = "stream-token-0123456789abcdef";

describe("virtfleet-api process", () => {
  test("SIGTERM with event streams open ends them and the process exits", async ({ redisUrl, prefix }) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "virtfleet-api-"));
    const tokens = path.join(dir, "tokens.json");
    await writeFile(tokens, JSON.stringify([{ id: "r", token: TOKEN, scopes: ["vms:read"], tenant: "acme" }]));
    const fleet = new FleetClient({ redisUrl, prefix });
    const port = await freePort();
    const child = spawn(process.execPath, [BIN], {
      env: {
        PATH: process.env.PATH,
        REDIS_URL: redisUrl,
        VIRTFLEET_PREFIX: prefix,
        VIRTFLEET_API_PORT: String(port),
        VIRTFLEET_API_TOKENS_FILE: tokens,
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<string | number | null>((resolve) =>
      child.on("exit", (code, signal) => resolve(signal ?? code)),
    );
    try {
      await hostUp(fleet, "as-p1");
      const job = await fleet.createVm(tinySpec("as-p1-vm"), { tenant: "acme" });
      const url = `http://127.0.0.1:${port}/v1/jobs/${job.id}/events`;
      let stream: Awaited<ReturnType<typeof openSse>> | undefined;
      for (let i = 0; i < 200 && stream === undefined; i++) {
        stream = await openSse(url, TOKEN).catch(() => undefined);
        if (stream === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      if (stream === undefined) throw new Error("the API did not answer");
      expect(stream.status).toBe(200);
      await stream.waitEvents(2);
      // The job is still running: only the shutdown can end this stream.
      child.kill("SIGTERM");
      expect(await exited).toBe("SIGTERM");
      await stream.ended;
      expect(stream.events.map((e) => e.phase)).toEqual(["queued", "placed"]);
    } finally {
      child.kill("SIGKILL");
      await fleet.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
