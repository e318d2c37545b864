import { describe, expect, it } from "vitest";
import { type VirtInstallOptions, virtInstallArgs } from "./virt-install.js";

const seed: VirtInstallOptions = {
  name: "budgie",
  memoryMiB: 2048,
  vcpus: 1,
  disks: [{ path: "vol.raw" }],
  install: { method: "cdrom", path: "ubuntu.iso" },
  osVariant: "ubuntu18.04",
  networks: [{ type: "bridge", bridge: "virbr0", model: "virtio" }],
};

/** The value following `flag` (first occurrence). */
function after(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i === -1 ? undefined : args[i + 1];
}

describe("virtInstallArgs", () => {
  it("gives back the seed recipe exactly", () => {
    expect(virtInstallArgs(seed)).toEqual([
      "--name=budgie",
      "--ram=2048",
      "--vcpus=1",
      "--disk",
      "path=vol.raw",
      "--cdrom=ubuntu.iso",
      "--os-variant",
      "ubuntu18.04",
      "--network",
      "bridge=virbr0,model=virtio",
    ]);
  });

  it("imports from the first disk with --import", () => {
    const args = virtInstallArgs({
      ...seed,
      disks: [{ path: "/vms/a/disk0.qcow2", format: "qcow2" }],
      install: { method: "import" },
    });
    expect(args).toContain("--import");
    expect(args.some((a) => a.startsWith("--cdrom"))).toBe(false);
    expect(after(args, "--disk")).toBe("path=/vms/a/disk0.qcow2,format=qcow2");
  });

  it('boots a kernel directly with --import --boot kernel=…,initrd=…,kernel_args="…"', () => {
    const args = virtInstallArgs({
      ...seed,
      disks: [],
      install: { method: "kernel", kernelPath: "/i/k", initrdPath: "/i/r", kernelArgs: "console=ttyS0 a=1,b" },
    });
    const i = args.indexOf("--import");
    expect(i).toBeGreaterThan(-1);
    expect(args.slice(i, i + 3)).toEqual([
      "--import",
      "--boot",
      'kernel=/i/k,initrd=/i/r,kernel_args="console=ttyS0 a=1,b"',
    ]);
    expect(args.filter((a) => a === "--import")).toHaveLength(1);
  });

  it("leaves out initrd and empty kernel args", () => {
    const args = virtInstallArgs({ ...seed, install: { method: "kernel", kernelPath: "/i/k", kernelArgs: "" } });
    expect(after(args, "--boot")).toBe("kernel=/i/k");
  });

  it("quotes a kernel path holding a comma", () => {
    const args = virtInstallArgs({ ...seed, install: { method: "kernel", kernelPath: "/i/a,b" } });
    expect(after(args, "--boot")).toBe('kernel="/i/a,b"');
  });

  it("passes --virt-type qemu", () => {
    expect(after(virtInstallArgs({ ...seed, virtType: "qemu" }), "--virt-type")).toBe("qemu");
    expect(virtInstallArgs(seed)).not.toContain("--virt-type");
  });

  it("passes --graphics none only when graphics is false", () => {
    expect(after(virtInstallArgs({ ...seed, graphics: false }), "--graphics")).toBe("none");
    expect(virtInstallArgs({ ...seed, graphics: true })).not.toContain("--graphics");
  });

  it("passes --noautoconsole", () => {
    expect(virtInstallArgs({ ...seed, noAutoconsole: true })).toContain("--noautoconsole");
    expect(virtInstallArgs({ ...seed, noAutoconsole: false })).not.toContain("--noautoconsole");
  });

  it("writes the serial console to a file", () => {
    expect(after(virtInstallArgs({ ...seed, serialFile: "/vms/budgie/console.log" }), "--serial")).toBe(
      "file,path=/vms/budgie/console.log",
    );
  });

  it("asks for --network none when networks is empty, and leaves it out when undefined", () => {
    expect(after(virtInstallArgs({ ...seed, networks: [] }), "--network")).toBe("none");
    const { networks: _n, ...noNetworks } = seed;
    expect(virtInstallArgs(noNetworks)).not.toContain("--network");
  });

  it("gives one --network per NIC, network= for libvirt networks", () => {
    const args = virtInstallArgs({
      ...seed,
      networks: [
        { type: "network", network: "labnet" },
        { type: "bridge", bridge: "br0", model: "e1000" },
      ],
    });
    const nets = args.flatMap((a, i) => (a === "--network" ? [args[i + 1]] : []));
    expect(nets).toEqual(["network=labnet", "bridge=br0,model=e1000"]);
  });

  it("says --disk none for an import with no disks", () => {
    const args = virtInstallArgs({ ...seed, disks: [], install: { method: "import" } });
    expect(after(args, "--disk")).toBe("none");
    expect(args.filter((a) => a === "--disk")).toHaveLength(1);
  });

  it("says --disk none for a cdrom install with no disks (virt-install insists on a --disk)", () => {
    const args = virtInstallArgs({ ...seed, disks: [] });
    expect(args[args.indexOf("--disk") + 1]).toBe("none");
  });

  it("in xml disk mode writes each disk as <disk> XPath edits, with no --disk path= (so no storage pool)", () => {
    const args = virtInstallArgs({
      ...seed,
      install: { method: "import" },
      diskMode: "xml",
      disks: [
        { path: "/vms/a/disk0.qcow2", format: "qcow2" },
        { path: "/vms/a/disk1.raw", format: "raw" },
      ],
    });
    expect(args.filter((a) => a.startsWith("path="))).toEqual([]);
    expect(args[args.indexOf("--disk") + 1]).toBe("none");
    const edits = args.filter((_, i) => args[i - 1] === "--xml");
    expect(edits).toEqual([
      "./devices/disk[1]/@type=file",
      "./devices/disk[1]/@device=disk",
      "./devices/disk[1]/driver/@name=qemu",
      "./devices/disk[1]/driver/@type=qcow2",
      "./devices/disk[1]/source/@file=/vms/a/disk0.qcow2",
      "./devices/disk[1]/target/@dev=vda",
      "./devices/disk[1]/target/@bus=virtio",
      "./devices/disk[2]/@type=file",
      "./devices/disk[2]/@device=disk",
      "./devices/disk[2]/driver/@name=qemu",
      "./devices/disk[2]/driver/@type=raw",
      "./devices/disk[2]/source/@file=/vms/a/disk1.raw",
      "./devices/disk[2]/target/@dev=vdb",
      "./devices/disk[2]/target/@bus=virtio",
    ]);
  });

  it("in xml disk mode with a cdrom, data disks come after the cdrom's <disk>", () => {
    const args = virtInstallArgs({
      ...seed,
      diskMode: "xml",
      disks: [{ path: "/vms/a/disk0.qcow2", format: "qcow2" }],
    });
    expect(args).toContain("--cdrom=ubuntu.iso");
    expect(args).toContain("./devices/disk[2]/source/@file=/vms/a/disk0.qcow2");
    expect(args.some((a) => a.startsWith("./devices/disk[1]"))).toBe(false);
  });

  it("attaches read-only images as virtio disks after every data disk (cloud kernels have no SATA)", () => {
    const xml = (args: string[]) => args.flatMap((a, i) => (a === "--xml" ? [args[i + 1] as string] : []));
    const imported = xml(
      virtInstallArgs({
        ...seed,
        install: { method: "import" },
        diskMode: "xml",
        disks: [{ path: "/vms/a/disk0.qcow2", format: "qcow2" }],
        readonlyDisks: ["/vms/a/cidata.iso"],
      }),
    );
    expect(imported.filter((e) => e.includes("disk[2]"))).toEqual([
      "./devices/disk[2]/@type=file",
      "./devices/disk[2]/@device=disk",
      "./devices/disk[2]/driver/@name=qemu",
      "./devices/disk[2]/driver/@type=raw",
      "./devices/disk[2]/source/@file=/vms/a/cidata.iso",
      "./devices/disk[2]/target/@dev=vdb",
      "./devices/disk[2]/target/@bus=virtio",
      "xpath.create=./devices/disk[2]/readonly",
    ]);
    // With a cdrom install, virt-install's own cdrom is disk[1]: the seed is disk[3], after vda.
    const installed = xml(
      virtInstallArgs({ ...seed, diskMode: "xml", disks: [{ path: "/vms/a/d.raw" }], readonlyDisks: ["/vms/a/s.iso"] }),
    );
    expect(installed).toContain("./devices/disk[3]/source/@file=/vms/a/s.iso");
    expect(installed).toContain("./devices/disk[3]/target/@dev=vdb");
    expect(virtInstallArgs(seed).some((a) => a.includes("@device=cdrom"))).toBe(false);
  });

  it("passes a NIC's mac= after its model", () => {
    const args = virtInstallArgs({
      ...seed,
      networks: [
        { type: "bridge", bridge: "br0", model: "virtio", mac: "52:54:00:12:34:56" },
        { type: "network", network: "lab", mac: "52:54:00:12:34:57" },
      ],
    });
    const nets = args.flatMap((a, i) => (a === "--network" ? [args[i + 1]] : []));
    expect(nets).toEqual(["bridge=br0,model=virtio,mac=52:54:00:12:34:56", "network=lab,mac=52:54:00:12:34:57"]);
  });

  it("puts --connect URI first", () => {
    expect(virtInstallArgs({ ...seed, connect: "qemu:///system" }).slice(0, 3)).toEqual([
      "--connect",
      "qemu:///system",
      "--name=budgie",
    ]);
  });

  it("passes each xml edit as an --xml pair, in order", () => {
    const edits = ["./metadata/vm/@fingerprint=abc", "./metadata/vm/@job=j1"];
    const args = virtInstallArgs({ ...seed, xmlEdits: edits });
    const pairs = args.flatMap((a, i) => (a === "--xml" ? [[a, args[i + 1]]] : []));
    expect(pairs).toEqual([
      ["--xml", edits[0]],
      ["--xml", edits[1]],
    ]);
  });

  it("passes a description as --metadata, quoted when it holds a comma", () => {
    expect(after(virtInstallArgs({ ...seed, description: "a,b" }), "--metadata")).toBe('description="a,b"');
  });

  it("quotes a disk path holding a comma or a space", () => {
    expect(after(virtInstallArgs({ ...seed, disks: [{ path: "/v/a,b.raw" }] }), "--disk")).toBe('path="/v/a,b.raw"');
    expect(after(virtInstallArgs({ ...seed, disks: [{ path: "/v/a b.raw" }] }), "--disk")).toBe('path="/v/a b.raw"');
  });

  it("runs QEMU as a given uid:gid with a static DAC seclabel that relabels nothing", () => {
    const args = virtInstallArgs({ ...seed, runAs: { uid: 64055, gid: 107 } });
    expect(after(args, "--seclabel")).toBe("type=static,model=dac,label=+64055:+107,relabel=no");
    expect(virtInstallArgs(seed)).not.toContain("--seclabel");
  });

  it("never splits a name with shell metacharacters: it stays one argv entry", () => {
    const name = "x; rm -rf / $(reboot) `id` && echo | cat > /etc/passwd";
    const args = virtInstallArgs({ ...seed, name });
    expect(Array.isArray(args)).toBe(true);
    expect(args.every((a) => typeof a === "string")).toBe(true);
    // The whole name is inside exactly one entry, and no entry is a fragment of it.
    expect(args.filter((a) => a.includes(name))).toEqual([`--name=${name}`]);
    expect(args).not.toContain("rm");
    expect(args).not.toContain("&&");
    // Same number of entries as with a harmless name: nothing got split off.
    expect(args).toHaveLength(virtInstallArgs(seed).length);
    expect(args[0]).toBe(`--name=${name}`);
  });
});
