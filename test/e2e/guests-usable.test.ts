import { execFile } from "node:child_process";
import { createHash, generateKeyPairSync, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  cliEnv,
  domainState,
  type FleetEnv,
  filesIn,
  jsonLines,
  runCli,
  startWorker,
  virsh,
  type WorkerProcess,
} from "./harness.js";

// Issue 13's whole flow: two Debian guests from the image catalogue on a host that did not have the
// image (pulled from a loopback HTTP server, checksum verified), each with an SSH key for the
// image's user and a static address from network-config on a bridge with no address on the host
// side; `--wait-ready ip`; hostname and key read back through the guest agent (nothing on the host
// ever connects to a guest); the address in `virtfleet ls`; destroyed with nothing left.

const run = promisify(execFile);
const id = randomUUID().slice(0, 6);
const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("cloudImageDir"),
  testRoot: inject("testRoot"),
};
const env = cliEnv(fleet);
const IMAGE = `gu-debian-${id}`;
const BRIDGE = `gubr${id.slice(0, 4)}`;
/** Documentation addresses (TEST-NET-1), on a bridge with no host address: no traffic leaves the guest. */
const GUESTS = [1, 2].map((n) => ({
  name: `gu-${n}-${id}`,
  mac: `52:54:00:9a:${id.slice(0, 2)}:0${n}`,
  address: `192.0.2.${10 + n}`,
}));
/** A Debian boot under TCG takes about a minute on an idle 2-core host, several on a busy one. */
const READY_TIMEOUT_SEC = 1200;

let worker: WorkerProcess;
let server: http.Server;
let gets = 0;
let dir: string;

/** An OpenSSH public key line (ssh-ed25519) made here, so no key tool is needed. */
function sshPublicKey(): string {
  const { publicKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url");
  const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]);
  return `ssh-ed25519 ${blob.toString("base64")} gu-test@virtfleet`;
}

async function agent(vm: string, command: Record<string, unknown>): Promise<Record<string, unknown>> {
  const r = await virsh(["qemu-agent-command", vm, JSON.stringify(command)]);
  if (r.code !== 0) throw new Error(`qemu-agent-command failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { return: Record<string, unknown> }).return;
}

/** Runs a program in the guest through the agent and returns what it printed. */
async function guestRun(vm: string, file: string, args: string[]): Promise<string> {
  const { pid } = await agent(vm, {
    execute: "guest-exec",
    arguments: { path: file, arg: args, "capture-output": true },
  });
  for (let i = 0; i < 120; i++) {
    const status = await agent(vm, { execute: "guest-exec-status", arguments: { pid } });
    if (status.exited === true)
      return Buffer.from((status["out-data"] as string | undefined) ?? "", "base64").toString();
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${file} did not exit in the guest`);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "gu-"));
  await run("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  await run("ip", ["link", "set", BRIDGE, "up"]);
  const file = path.join(fleet.imageDir, "debian12.qcow2");
  server = http.createServer((req, res) => {
    gets++;
    if (req.url !== `/${IMAGE}.qcow2`) {
      res.writeHead(404).end();
      return;
    }
    void stat(file).then((s) => {
      res.writeHead(200, { "content-length": String(s.size) });
      createReadStream(file).pipe(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  worker = await startWorker(fleet);
});

afterAll(async () => {
  await worker?.stop();
  for (const g of GUESTS) {
    if ((await domainState(g.name)) !== undefined) {
      await virsh(["destroy", g.name]);
      await virsh(["undefine", g.name, "--nvram"]);
    }
  }
  await rm(path.join(fleet.imageDir, `${IMAGE}.qcow2`), { force: true });
  await rm(worker.storageDir, { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
  await run("ip", ["link", "del", BRIDGE]).catch(() => undefined);
  await new Promise((resolve) => server.close(resolve));
});

describe("guests people can use", () => {
  it(
    "two Debian guests from the catalogue, with a key and a static address, ready by ip, read back through the agent",
    async () => {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${IMAGE}.qcow2`;
      const sha = createHash("sha256")
        .update(await readFile(path.join(fleet.imageDir, "debian12.qcow2")))
        .digest("hex");
      const imported = await runCli(["images", "import", IMAGE, "--url", url, "--sha256", sha], env);
      expect(imported.code, imported.stdout + imported.stderr).toBe(0);

      const key = sshPublicKey();
      const keyFile = path.join(dir, "id.pub");
      await writeFile(keyFile, `${key}\n`);
      const results = await Promise.all(
        GUESTS.map(async (g) => {
          const netFile = path.join(dir, `${g.name}.yaml`);
          await writeFile(
            netFile,
            [
              "version: 2",
              "ethernets:",
              "  lan:",
              "    match:",
              `      macaddress: "${g.mac}"`,
              "    set-name: eth0",
              `    addresses: [${g.address}/24]`,
              "",
            ].join("\n"),
          );
          return runCli(
            [
              "create",
              "--name",
              g.name,
              "--memory",
              "768",
              "--disk",
              `size=4,backing=${IMAGE}`,
              "--boot",
              "kernel=debian12,initrd=debian12,kernel_args=root=/dev/vda console=ttyS0",
              "--network",
              `bridge=${BRIDGE},model=virtio,mac=${g.mac}`,
              "--cloud-init",
              `network-config=${netFile}`,
              "--ssh-key",
              keyFile,
              "--virt-type",
              "qemu",
              "--wait",
              "--wait-ready",
              "ip",
              "--ready-timeout",
              String(READY_TIMEOUT_SEC),
              "--json",
            ],
            env,
            (READY_TIMEOUT_SEC + 180) * 1000,
          );
        }),
      );
      for (const r of results) expect(r.code, r.stdout + r.stderr + worker.logs()).toBe(0);
      // Pulled once, for both, from the loopback server; the checksum was verified.
      expect(gets).toBe(1);
      const phases = results.flatMap((r) => jsonLines(r.stdout).map((e) => e.phase));
      expect(phases).toContain("image.pulling");
      expect(phases).toContain("cloudinit.seeded");

      for (const [i, g] of GUESTS.entries()) {
        const ready = jsonLines((results[i] as { stdout: string }).stdout).find((e) => e.phase === "guest.ready");
        expect(ready?.addresses).toContain(g.address);
        expect((await guestRun(g.name, "/bin/hostname", [])).trim()).toBe(g.name);
        expect(await guestRun(g.name, "/bin/cat", ["/home/debian/.ssh/authorized_keys"])).toContain(key);
      }
      const listed = JSON.parse((await runCli(["ls", "--json"], env)).stdout) as {
        name: string;
        addresses?: string[];
      }[];
      for (const g of GUESTS) expect(listed.find((v) => v.name === g.name)?.addresses).toContain(g.address);

      for (const g of GUESTS) {
        const destroyed = await runCli(["destroy", g.name, "--wait"], env);
        expect(destroyed.code, destroyed.stdout + destroyed.stderr).toBe(0);
        expect(await domainState(g.name)).toBeUndefined();
      }
      // No seed ISO, disk or folder left.
      expect(await filesIn(worker.storageDir)).toEqual([]);
      expect((await runCli(["images", "rm", IMAGE], env)).code).toBe(0);
    },
    (READY_TIMEOUT_SEC + 600) * 1000,
  );
});
