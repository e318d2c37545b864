import { parseOrThrow, ValidationError, VmSpec } from "@virtfleet/core";
import { describe, expect, it } from "vitest";
import {
  type CreateFlags,
  expandNames,
  flagForField,
  parseBoot,
  parseDisk,
  parseLabel,
  parseNetwork,
  parseSubOptions,
  specFromFlags,
} from "./flags.js";

/** The ValidationError `fn` throws (fails the test when it does not throw one). */
function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error("expected a ValidationError");
}

describe("parseSubOptions", () => {
  it("splits key=value pairs", () => {
    expect(Object.fromEntries(parseSubOptions("--disk", "size=20,format=raw"))).toEqual({ size: "20", format: "raw" });
  });

  it("reads an empty string as no options", () => {
    expect(parseSubOptions("--disk", "").size).toBe(0);
  });

  it("keeps an empty value", () => {
    expect(Object.fromEntries(parseSubOptions("--x", "a=,b=2"))).toEqual({ a: "", b: "2" });
  });

  it("keeps '=' inside a value", () => {
    expect(parseSubOptions("--x", "a=b=c").get("a")).toBe("b=c");
  });

  it("reads double-quoted values that hold commas", () => {
    const o = parseSubOptions("--x", 'path="/a,b/c",format=raw');
    expect(Object.fromEntries(o)).toEqual({ path: "/a,b/c", format: "raw" });
  });

  it("reads a quoted value at the end", () => {
    expect(Object.fromEntries(parseSubOptions("--x", 'a=1,b="x,y"'))).toEqual({ a: "1", b: "x,y" });
  });

  it("lets restKey take the rest, commas and '=' included", () => {
    const o = parseSubOptions("--boot", "kernel=tiny,kernel_args=console=ttyS0 a=1,b,initrd=zzz", "kernel_args");
    expect(Object.fromEntries(o)).toEqual({ kernel: "tiny", kernel_args: "console=ttyS0 a=1,b,initrd=zzz" });
  });

  it("ends a quoted restKey value at its quote", () => {
    const o = parseSubOptions("--boot", 'kernel_args="a=1,b",initrd=r', "kernel_args");
    expect(Object.fromEntries(o)).toEqual({ kernel_args: "a=1,b", initrd: "r" });
  });

  it("splits restKey-less input at commas", () => {
    expect(Object.fromEntries(parseSubOptions("--boot", "kernel_args=a=1,b=2"))).toEqual({
      kernel_args: "a=1",
      b: "2",
    });
  });

  it("rejects a duplicate key, naming the flag", () => {
    const error = validationError(() => parseSubOptions("--disk", "size=1,size=2"));
    expect(error.issues[0]?.field).toBe("--disk");
    expect(error.issues[0]?.message).toContain("size given twice");
    expect(error.code).toBe("INVALID_SPEC");
  });

  it.each([
    ["--disk", "size"],
    ["--network", "virbr0"],
    ["--disk", "size=20,raw"],
    ["--disk", "raw,size=20"],
    ["--boot", "=x"],
  ])("rejects %s %j, naming the flag", (flag, input) => {
    const error = validationError(() => parseSubOptions(flag, input));
    expect(error.issues[0]?.field).toBe(flag);
    expect(error.field).toBe(flag);
  });

  it("rejects an unclosed quote", () => {
    expect(validationError(() => parseSubOptions("--x", 'a="b,c')).issues[0]?.message).toContain("unclosed quote");
  });

  it("rejects text after a closing quote", () => {
    expect(validationError(() => parseSubOptions("--x", 'a="b"c,d=1')).issues[0]?.field).toBe("--x");
  });
});

describe("parseDisk", () => {
  it("reads size and format", () => {
    expect(parseDisk("size=20,format=raw")).toEqual({ sizeGiB: 20, format: "raw" });
    expect(parseDisk("size=0.5")).toEqual({ sizeGiB: 0.5 });
  });

  it("makes a disk with a backing image qcow2", () => {
    expect(parseDisk("size=10,backing=deb")).toEqual({ sizeGiB: 10, format: "qcow2", backing: "deb" });
  });

  it("keeps an explicit format with a backing image (VmSpec rejects raw later)", () => {
    const disk = parseDisk("size=10,format=raw,backing=deb");
    expect(disk).toEqual({ sizeGiB: 10, format: "raw", backing: "deb" });
  });

  it.each(["format=raw", "size=", "size=abc", "size=-1", "size=20,bus=virtio", "path=/x"])(
    "rejects %j naming --disk",
    (raw) => {
      expect(validationError(() => parseDisk(raw)).issues[0]?.field).toBe("--disk");
    },
  );
});

describe("parseNetwork", () => {
  it("reads none as no network", () => {
    expect(parseNetwork("none")).toBeUndefined();
  });

  it("reads a bridge with a model", () => {
    expect(parseNetwork("bridge=virbr0,model=virtio")).toEqual({ type: "bridge", bridge: "virbr0", model: "virtio" });
  });

  it("reads a bridge without a model", () => {
    expect(parseNetwork("bridge=br0")).toEqual({ type: "bridge", bridge: "br0" });
  });

  it("reads virt-install's mac=", () => {
    expect(parseNetwork("bridge=br0,model=virtio,mac=52:54:00:00:00:01")).toEqual({
      type: "bridge",
      bridge: "br0",
      model: "virtio",
      mac: "52:54:00:00:00:01",
    });
    expect(parseNetwork("network=lab,mac=52:54:00:00:00:02")).toEqual({
      type: "network",
      network: "lab",
      mac: "52:54:00:00:00:02",
    });
  });

  it("reads a libvirt network", () => {
    expect(parseNetwork("network=labnet")).toEqual({ type: "network", network: "labnet" });
    expect(parseNetwork("network=labnet,model=e1000")).toEqual({
      type: "network",
      network: "labnet",
      model: "e1000",
    });
  });

  it.each(["bridge=virbr0,network=labnet", "model=virtio", "bridge=br0,speed=10", "virbr0"])(
    "rejects %j naming --network",
    (raw) => {
      expect(validationError(() => parseNetwork(raw)).issues[0]?.field).toBe("--network");
    },
  );
});

describe("parseBoot", () => {
  it("reads kernel, initrd and kernel_args", () => {
    expect(parseBoot("kernel=tiny,initrd=tiny,kernel_args=console=ttyS0 a=1,b")).toEqual({
      method: "kernel",
      kernel: "tiny",
      initrd: "tiny",
      kernelArgs: "console=ttyS0 a=1,b",
    });
  });

  it("reads a kernel alone", () => {
    expect(parseBoot("kernel=vmlinuz")).toEqual({ method: "kernel", kernel: "vmlinuz" });
  });

  it.each(["initrd=tiny", "kernel=tiny,cmdline=x", "uefi"])("rejects %j naming --boot", (raw) => {
    expect(validationError(() => parseBoot(raw)).issues[0]?.field).toBe("--boot");
  });
});

describe("parseLabel", () => {
  it("collects key=value pairs", () => {
    const into = parseLabel("--vm-label", "team=infra");
    parseLabel("--vm-label", "env=a=b", into);
    expect(into).toEqual({ team: "infra", env: "a=b" });
  });

  it.each(["team", "=infra"])("rejects %j naming the flag", (raw) => {
    expect(validationError(() => parseLabel("--vm-label", raw)).issues[0]?.field).toBe("--vm-label");
  });
});

describe("specFromFlags", () => {
  const product: CreateFlags = {
    name: "budgie",
    memory: "2048",
    vcpus: "1",
    disk: ["size=20,format=raw"],
    cdrom: "ubuntu-18.04.iso",
    osVariant: "ubuntu18.04",
    network: ["bridge=virbr0,model=virtio"],
  };

  it("turns the PRODUCT example flags into a spec that VmSpec parses", () => {
    const input = specFromFlags(product);
    expect(input).toEqual({
      name: "budgie",
      memoryMiB: 2048,
      vcpus: 1,
      disks: [{ sizeGiB: 20, format: "raw" }],
      install: { method: "cdrom", image: "ubuntu-18.04.iso" },
      osVariant: "ubuntu18.04",
      networks: [{ type: "bridge", bridge: "virbr0", model: "virtio" }],
      labels: {},
    });
    const spec = VmSpec.parse(input);
    expect(spec.install).toEqual({ method: "cdrom", image: "ubuntu-18.04.iso" });
    expect(spec.disks).toEqual([{ sizeGiB: 20, format: "raw" }]);
  });

  it("takes --ram as an alias of --memory", () => {
    const { memory: _m, ...rest } = product;
    expect(specFromFlags({ ...rest, ram: "1024" }).memoryMiB).toBe(1024);
  });

  it("names --ram when --ram is bad", () => {
    const { memory: _m, ...rest } = product;
    expect(validationError(() => specFromFlags({ ...rest, ram: "lots" })).field).toBe("--ram");
  });

  it("rejects --memory and --ram together", () => {
    expect(validationError(() => specFromFlags({ ...product, ram: "1024" })).field).toBe("--memory");
  });

  it("names --memory when it is missing", () => {
    const { memory: _m, ...rest } = product;
    const error = validationError(() => specFromFlags(rest));
    expect(error.issues[0]?.field).toBe("--memory");
  });

  it.each(["2048.5", "2G", ""])("names --memory when it is %j", (memory) => {
    expect(validationError(() => specFromFlags({ ...product, memory })).field).toBe("--memory");
  });

  it("names --name when it is missing", () => {
    const { name: _n, ...rest } = product;
    expect(validationError(() => specFromFlags(rest)).field).toBe("--name");
  });

  it("defaults vcpus to 1 and names --vcpus when bad", () => {
    const { vcpus: _v, ...rest } = product;
    expect(specFromFlags(rest).vcpus).toBe(1);
    expect(validationError(() => specFromFlags({ ...product, vcpus: "two" })).field).toBe("--vcpus");
  });

  it("needs an install method", () => {
    const { cdrom: _c, ...rest } = product;
    expect(validationError(() => specFromFlags(rest)).field).toBe("--import");
  });

  it("reads --import", () => {
    const { cdrom: _c, ...rest } = product;
    const input = specFromFlags({ ...rest, import: true });
    expect(input.install).toEqual({ method: "import" });
    expect(VmSpec.safeParse(input).success).toBe(true);
  });

  it("reads --boot", () => {
    const { cdrom: _c, ...rest } = product;
    const input = specFromFlags({ ...rest, boot: "kernel=tiny,kernel_args=console=ttyS0" });
    expect(input.install).toEqual({ method: "kernel", kernel: "tiny", kernelArgs: "console=ttyS0" });
  });

  it("rejects --cdrom with --boot", () => {
    expect(validationError(() => specFromFlags({ ...product, boot: "kernel=tiny" })).field).toBe("--boot");
  });

  it("reads --network none as no networks, and rejects none with others", () => {
    expect(specFromFlags({ ...product, network: ["none"] }).networks).toEqual([]);
    expect(validationError(() => specFromFlags({ ...product, network: ["none", "bridge=br0"] })).field).toBe(
      "--network",
    );
  });

  it("reads several --network and --disk flags in order", () => {
    const input = specFromFlags({
      ...product,
      disk: ["size=20", "size=5,format=raw"],
      network: ["network=labnet", "bridge=br0"],
    });
    expect(input.disks).toEqual([{ sizeGiB: 20 }, { sizeGiB: 5, format: "raw" }]);
    expect(input.networks).toEqual([
      { type: "network", network: "labnet" },
      { type: "bridge", bridge: "br0" },
    ]);
  });

  it("reads --virt-type and --vm-label", () => {
    const input = specFromFlags({ ...product, virtType: "qemu", vmLabel: ["team=infra", "env=dev"] });
    expect(input.virtType).toBe("qemu");
    expect(input.labels).toEqual({ team: "infra", env: "dev" });
  });

  it("leaves schema checks to VmSpec, whose field maps back to the flag", () => {
    const input = specFromFlags({ ...product, memory: "32" });
    const error = validationError(() => parseOrThrow(VmSpec, input, "spec"));
    expect(error.field).toBe("spec.memoryMiB");
    expect(flagForField(error.field as string)).toBe("--memory");
  });
});

describe("flagForField", () => {
  it.each([
    ["spec.name", "--name"],
    ["name", "--name"],
    ["spec.memoryMiB", "--memory"],
    ["spec.vcpus", "--vcpus"],
    ["spec.disks.0.sizeGiB", "--disk"],
    ["spec.disks", "--disk"],
    ["spec.install.image", "--cdrom"],
    ["spec.install.kernel", "--boot"],
    ["spec.install.kernelArgs", "--boot"],
    ["spec.osVariant", "--os-variant"],
    ["spec.networks.1.bridge", "--network"],
    ["spec.virtType", "--virt-type"],
    ["spec.labels.team", "--vm-label"],
    ["host", "--host"],
    ["spec.cloudInit.userData", "--cloud-init user-data"],
    ["spec.cloudInit.metaData", "--cloud-init meta-data"],
    ["spec.cloudInit.networkConfig", "--cloud-init network-config"],
    ["spec.cloudInit.rootSshAuthorizedKeys.0", "--cloud-init root-ssh-key"],
    ["spec.cloudInit.sshAuthorizedKeys.2", "--ssh-key"],
    ["spec.cloudInit", "--cloud-init"],
    ["spec.somethingElse", "spec.somethingElse"],
    ["(root)", "(root)"],
  ])("%s → %s", (field, flag) => {
    expect(flagForField(field)).toBe(flag);
  });
});

describe("expandNames", () => {
  it("replaces {n} with 1…count", () => {
    expect(expandNames("lab-{n}", 3)).toEqual(["lab-1", "lab-2", "lab-3"]);
  });

  it("replaces every {n}", () => {
    expect(expandNames("{n}-lab-{n}", 2)).toEqual(["1-lab-1", "2-lab-2"]);
  });

  it("appends -N without {n}", () => {
    expect(expandNames("lab", 2)).toEqual(["lab-1", "lab-2"]);
  });

  it("gives nothing for a count of 0", () => {
    expect(expandNames("lab-{n}", 0)).toEqual([]);
  });
});
