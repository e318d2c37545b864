import { VirtfleetError } from "@virtfleet/core";
import type { CommandRunner, RunOptions, RunResult } from "@virtfleet/hypervisor";
import { describe, expect, it } from "vitest";
import { Libvirt, METADATA_NS, type Ownership, ownershipXml, ownershipXmlEdits, parseOwnershipXml } from "./libvirt.js";

const URI = "qemu:///system";

type Reply = RunResult | Error | ((file: string, args: readonly string[]) => RunResult | Error);

/** A CommandRunner that records every argv and answers from a queue (default: empty output). */
class FakeRunner implements CommandRunner {
  readonly calls: { file: string; args: readonly string[]; options: RunOptions | undefined }[] = [];
  readonly #replies: Reply[];

  constructor(...replies: Reply[]) {
    this.#replies = replies;
  }

  async run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push({ file, args: [...args], options });
    let reply = this.#replies.shift() ?? { stdout: "", stderr: "" };
    if (typeof reply === "function") reply = reply(file, args);
    if (reply instanceof Error) throw reply;
    return reply;
  }
}

function failed(stderr: string): VirtfleetError {
  return new VirtfleetError("COMMAND_FAILED", "virsh failed (exit 1)", { command: ["virsh"], exitCode: 1, stderr });
}

const owner: Ownership = { fingerprint: "a".repeat(64), jobId: "job-42", hostId: "host-1" };

describe("ownership metadata", () => {
  it("writes the ownership attributes as virt-install --xml edits", () => {
    expect(ownershipXmlEdits(owner)).toEqual([
      `./metadata/vm/@xmlns=${METADATA_NS}`,
      `./metadata/vm/@fingerprint=${owner.fingerprint}`,
      "./metadata/vm/@job=job-42",
      "./metadata/vm/@host=host-1",
    ]);
  });

  it("round-trips through what virsh metadata prints", () => {
    // virt-install writes the edits; `virsh metadata NAME NS` prints the element back like this.
    const edits = ownershipXmlEdits(owner);
    const attr = (name: string) =>
      edits
        .find((e) => e.startsWith(`./metadata/vm/@${name}=`))
        ?.split("=")
        .slice(1)
        .join("=");
    const printed = `<vm fingerprint="${attr("fingerprint")}" job="${attr("job")}" host="${attr("host")}"/>\n`;
    expect(parseOwnershipXml(printed)).toEqual(owner);
  });

  it("parses the element with the namespace and in any attribute order", () => {
    const printed = `<vm xmlns="${METADATA_NS}" host="h" job="j" fingerprint="f"/>`;
    expect(parseOwnershipXml(printed)).toEqual({ fingerprint: "f", jobId: "j", hostId: "h" });
  });

  it("round-trips ownershipXml, escaping included", () => {
    const odd: Ownership = { fingerprint: "f&<>\"'", jobId: "j", hostId: "h" };
    const xml = ownershipXml(odd);
    expect(xml).toContain(`fingerprint="f&amp;&lt;&gt;&quot;'"`);
    expect(parseOwnershipXml(xml)).toEqual(odd);
    expect(parseOwnershipXml(ownershipXml(owner))).toEqual(owner);
  });

  it("gives undefined for unrelated XML", () => {
    expect(parseOwnershipXml('<domain type="kvm"><name>budgie</name></domain>')).toBeUndefined();
    expect(parseOwnershipXml("")).toBeUndefined();
  });

  it("gives undefined when an attribute is missing", () => {
    expect(parseOwnershipXml('<vm fingerprint="f" job="j"/>')).toBeUndefined();
  });

  it("does not take a longer attribute name for a shorter one", () => {
    expect(parseOwnershipXml('<vm xfingerprint="f" job="j" host="h"/>')).toBeUndefined();
  });

  it("writes the fleet's identity as a fleet attribute and reads it back", () => {
    const withFleet: Ownership = { ...owner, fleetId: "5f3bce27-2dbc-46e1-803e-690c1277af3c" };
    expect(ownershipXmlEdits(withFleet)).toContain("./metadata/vm/@fleet=5f3bce27-2dbc-46e1-803e-690c1277af3c");
    expect(ownershipXml(withFleet)).toContain(' fleet="5f3bce27-2dbc-46e1-803e-690c1277af3c"');
    expect(parseOwnershipXml(ownershipXml(withFleet))).toEqual(withFleet);
    const printed = `<vm xmlns="${METADATA_NS}" fleet="F1" host="h" job="j" fingerprint="f"/>`;
    expect(parseOwnershipXml(printed)).toEqual({ fingerprint: "f", jobId: "j", hostId: "h", fleetId: "F1" });
  });

  it("reads older metadata without a fleet: owned, but with no fleet id", () => {
    const parsed = parseOwnershipXml(`<vm xmlns="${METADATA_NS}" fingerprint="f" job="j" host="h"/>`);
    expect(parsed).toEqual({ fingerprint: "f", jobId: "j", hostId: "h" });
    expect(parsed?.fleetId).toBeUndefined();
    expect(parseOwnershipXml('<vm fingerprint="f" job="j" host="h" fleet=""/>')?.fleetId).toBeUndefined();
  });
});

describe("Libvirt", () => {
  it("state() runs virsh domstate and parses it", async () => {
    const runner = new FakeRunner({ stdout: "running\n\n", stderr: "" });
    const libvirt = new Libvirt(runner, URI);
    expect(await libvirt.state("budgie")).toBe("running");
    expect(runner.calls).toEqual([{ file: "virsh", args: ["-c", URI, "domstate", "budgie"], options: undefined }]);
  });

  it("state() passes the run options on", async () => {
    const runner = new FakeRunner({ stdout: "shut off\n", stderr: "" });
    const signal = new AbortController().signal;
    expect(await new Libvirt(runner, URI).state("budgie", { timeoutMs: 5, signal })).toBe("shut off");
    expect(runner.calls[0]?.options).toEqual({ timeoutMs: 5, signal });
  });

  it("state() gives undefined when the domain does not exist", async () => {
    const runner = new FakeRunner(failed("error: failed to get domain 'x'"));
    expect(await new Libvirt(runner, URI).state("x")).toBeUndefined();
  });

  it("state() rethrows other failures", async () => {
    const error = failed("error: failed to connect to the hypervisor");
    const runner = new FakeRunner(error);
    await expect(new Libvirt(runner, URI).state("x")).rejects.toBe(error);
  });

  it("state() rethrows a non-virtfleet error even if its message looks like a missing domain", async () => {
    const error = new Error("failed to get domain 'x'");
    await expect(new Libvirt(new FakeRunner(error), URI).state("x")).rejects.toBe(error);
  });

  it("stop() runs virsh destroy", async () => {
    const runner = new FakeRunner();
    await new Libvirt(runner, URI).stop("budgie");
    expect(runner.calls.map((c) => [c.file, ...c.args])).toEqual([["virsh", "-c", URI, "destroy", "budgie"]]);
  });

  it("stop() tolerates a domain that is not running", async () => {
    const runner = new FakeRunner(
      failed(
        "error: Failed to destroy domain 'budgie'\nerror: Requested operation is not valid: domain is not running",
      ),
    );
    await expect(new Libvirt(runner, URI).stop("budgie")).resolves.toBeUndefined();
    expect(runner.calls).toHaveLength(1);
  });

  it("stop() tolerates a domain that is gone", async () => {
    const runner = new FakeRunner(failed("error: failed to get domain 'budgie'"));
    await expect(new Libvirt(runner, URI).stop("budgie")).resolves.toBeUndefined();
  });

  it("stop() rethrows other failures", async () => {
    const error = failed("error: Failed to connect socket to '/var/run/libvirt/libvirt-sock'");
    await expect(new Libvirt(new FakeRunner(error), URI).stop("budgie")).rejects.toBe(error);
  });

  it("undefine() tolerates a domain that is gone and rethrows others", async () => {
    const runner = new FakeRunner(failed("error: failed to get domain 'budgie'"));
    await expect(new Libvirt(runner, URI).undefine("budgie")).resolves.toBeUndefined();
    expect(runner.calls[0]?.args).toEqual(["-c", URI, "undefine", "budgie", "--nvram"]);
    const other = failed("error: Requested operation is not valid: cannot undefine transient domain");
    await expect(new Libvirt(new FakeRunner(other), URI).undefine("budgie")).rejects.toBe(other);
  });

  it("ownership() reads virsh metadata", async () => {
    const runner = new FakeRunner({ stdout: `${ownershipXml(owner)}\n`, stderr: "" });
    expect(await new Libvirt(runner, URI).ownership("budgie")).toEqual(owner);
    expect(runner.calls[0]?.args).toEqual(["-c", URI, "metadata", "budgie", METADATA_NS]);
  });

  it("ownership() gives undefined when there is no metadata or no domain", async () => {
    const noMeta = new FakeRunner(failed("error: metadata not found: Requested metadata element is not present"));
    expect(await new Libvirt(noMeta, URI).ownership("budgie")).toBeUndefined();
    const noDomain = new FakeRunner(failed("error: failed to get domain 'budgie'"));
    expect(await new Libvirt(noDomain, URI).ownership("budgie")).toBeUndefined();
    const other = failed("error: failed to connect to the hypervisor");
    await expect(new Libvirt(new FakeRunner(other), URI).ownership("budgie")).rejects.toBe(other);
  });

  it("listDomains() reads one name a line", async () => {
    const runner = new FakeRunner({ stdout: "a\n b \n\nc\n", stderr: "" });
    const libvirt = new Libvirt(runner, URI);
    expect(await libvirt.listDomains()).toEqual(["a", "b", "c"]);
    expect(runner.calls.map((c) => c.args)).toEqual([["-c", URI, "list", "--all", "--name"]]);
  });

  it("nodeinfo() parses virsh nodeinfo", async () => {
    const runner = new FakeRunner({
      stdout: "CPU(s):              2\nMemory size:         24576000 KiB\n",
      stderr: "",
    });
    expect(await new Libvirt(runner, URI).nodeinfo()).toEqual({ cpus: 2, memoryMiB: 24000 });
  });

  it("virtInstall() runs virt-install with the argv as given", async () => {
    const runner = new FakeRunner();
    const args = ["--connect", URI, "--name=budgie; rm -rf /"];
    await new Libvirt(runner, URI).virtInstall(args);
    expect(runner.calls).toEqual([{ file: "virt-install", args, options: undefined }]);
  });
});
