import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MAX_LABELS, specFingerprint, stableStringify, totalDiskGiB, VmSpec } from "./vm-spec.js";

const base = {
  name: "budgie",
  memoryMiB: 2048,
  vcpus: 1,
  disks: [{ sizeGiB: 20 }],
};

/** The dotted paths of every issue when `input` fails to parse (and fails the test if it parses). */
function issuePaths(input: unknown): string[] {
  const result = VmSpec.safeParse(input);
  expect(result.success).toBe(false);
  if (result.success) return [];
  return result.error.issues.map((i) => i.path.map(String).join("."));
}

describe("VmSpec: valid specs", () => {
  it("fills in the defaults", () => {
    const spec = VmSpec.parse(base);
    expect(spec).toEqual({
      name: "budgie",
      memoryMiB: 2048,
      vcpus: 1,
      disks: [{ sizeGiB: 20, format: "qcow2" }],
      install: { method: "import" },
      osVariant: "generic",
      networks: [],
      labels: {},
    });
    expect(spec.virtType).toBeUndefined();
  });

  it("keeps what is given", () => {
    const spec = VmSpec.parse({
      name: "lab-1",
      memoryMiB: 64,
      vcpus: 256,
      disks: [
        { sizeGiB: 0.5, format: "raw" },
        { sizeGiB: 10, backing: "debian12.qcow2" },
      ],
      install: { method: "kernel", kernel: "tiny", initrd: "tiny", kernelArgs: "console=ttyS0 a=1,b" },
      osVariant: "debian12",
      networks: [
        { type: "bridge", bridge: "virbr0", model: "virtio" },
        { type: "network", network: "labnet" },
      ],
      virtType: "qemu",
      labels: { team: "infra", "app.kubernetes.io/name": "x" },
    });
    expect(spec.disks).toEqual([
      { sizeGiB: 0.5, format: "raw" },
      { sizeGiB: 10, format: "qcow2", backing: "debian12.qcow2" },
    ]);
    expect(spec.install).toEqual({
      method: "kernel",
      kernel: "tiny",
      initrd: "tiny",
      kernelArgs: "console=ttyS0 a=1,b",
    });
    expect(spec.networks).toHaveLength(2);
    expect(spec.virtType).toBe("qemu");
    expect(spec.osVariant).toBe("debian12");
  });

  it("accepts a cdrom install without disks", () => {
    const spec = VmSpec.parse({
      name: "x",
      memoryMiB: 512,
      vcpus: 1,
      install: { method: "cdrom", image: "ubuntu-18.04.iso" },
    });
    expect(spec.disks).toEqual([]);
    expect(spec.install).toEqual({ method: "cdrom", image: "ubuntu-18.04.iso" });
  });

  it("accepts a 63-character name and single-character names", () => {
    expect(VmSpec.safeParse({ ...base, name: "a".repeat(63) }).success).toBe(true);
    expect(VmSpec.safeParse({ ...base, name: "a" }).success).toBe(true);
    expect(VmSpec.safeParse({ ...base, name: "9" }).success).toBe(true);
  });
});

describe("VmSpec: bad fields name the field", () => {
  it.each([
    ["uppercase", "Budgie"],
    ["underscore", "bud_gie"],
    ["leading hyphen", "-budgie"],
    ["trailing hyphen", "budgie-"],
    ["64 characters", "a".repeat(64)],
    ["empty", ""],
    ["a dot", "bud.gie"],
    ["a space", "bud gie"],
    ["a slash", "a/b"],
  ])("rejects a name with %s", (_why, name) => {
    expect(issuePaths({ ...base, name })).toContain("name");
  });

  it.each([63, 0, -1, 2048.5])("rejects memoryMiB %s", (memoryMiB) => {
    expect(issuePaths({ ...base, memoryMiB })).toContain("memoryMiB");
  });

  it("rejects memoryMiB given as a string", () => {
    expect(issuePaths({ ...base, memoryMiB: "2048" })).toContain("memoryMiB");
  });

  it.each([0, -1, 1.5, 257])("rejects vcpus %s", (vcpus) => {
    expect(issuePaths({ ...base, vcpus })).toContain("vcpus");
  });

  it.each([0, -5])("rejects disk size %s", (sizeGiB) => {
    expect(issuePaths({ ...base, disks: [{ sizeGiB: 10 }, { sizeGiB }] })).toContain("disks.1.sizeGiB");
  });

  it("rejects an unknown disk format", () => {
    expect(issuePaths({ ...base, disks: [{ sizeGiB: 1, format: "vmdk" }] })).toContain("disks.0.format");
  });

  it("rejects a backing image on a raw disk, at disks.N.format", () => {
    const paths = issuePaths({
      ...base,
      disks: [{ sizeGiB: 1 }, { sizeGiB: 10, format: "raw", backing: "deb.qcow2" }],
    });
    expect(paths).toEqual(["disks.1.format"]);
  });

  it("rejects a backing image name that is a path", () => {
    expect(issuePaths({ ...base, disks: [{ sizeGiB: 10, backing: "../deb.qcow2" }] })).toContain("disks.0.backing");
  });

  it.each(["images/ubuntu.iso", "/etc/passwd", "../ubuntu.iso", "ubuntu..iso", ".hidden.iso"])(
    "rejects the cdrom image %s",
    (image) => {
      expect(issuePaths({ ...base, install: { method: "cdrom", image } })).toContain("install.image");
    },
  );

  it.each(['console="ttyS0"', "console='ttyS0'", "a\\b", "tab\there"])("rejects kernelArgs %j", (kernelArgs) => {
    expect(issuePaths({ ...base, install: { method: "kernel", kernel: "tiny", kernelArgs } })).toContain(
      "install.kernelArgs",
    );
  });

  it("rejects kernelArgs longer than 1024 characters", () => {
    const kernelArgs = "a".repeat(1025);
    expect(issuePaths({ ...base, install: { method: "kernel", kernel: "tiny", kernelArgs } })).toContain(
      "install.kernelArgs",
    );
  });

  it("rejects a kernel install without a kernel", () => {
    expect(issuePaths({ ...base, install: { method: "kernel" } })).toContain("install.kernel");
  });

  it("rejects an unknown install method", () => {
    expect(issuePaths({ ...base, install: { method: "pxe" } })).toContain("install.method");
  });

  it("rejects an import install with no disk, at path 'disks'", () => {
    expect(issuePaths({ name: "budgie", memoryMiB: 2048, vcpus: 1 })).toEqual(["disks"]);
    expect(issuePaths({ name: "budgie", memoryMiB: 2048, vcpus: 1, disks: [], install: { method: "import" } })).toEqual(
      ["disks"],
    );
  });

  it("rejects more than 16 disks", () => {
    expect(issuePaths({ ...base, disks: Array.from({ length: 17 }, () => ({ sizeGiB: 1 })) })).toContain("disks");
  });

  it("rejects a bridge name that is not a token", () => {
    expect(issuePaths({ ...base, networks: [{ type: "bridge", bridge: "br0,model=e1000" }] })).toContain(
      "networks.0.bridge",
    );
  });

  it("rejects an unknown NIC model", () => {
    expect(issuePaths({ ...base, networks: [{ type: "bridge", bridge: "virbr0", model: "ne2k" }] })).toContain(
      "networks.0.model",
    );
  });

  it("rejects an unknown virtType", () => {
    expect(issuePaths({ ...base, virtType: "xen" })).toContain("virtType");
  });

  it("rejects an osVariant with a space", () => {
    expect(issuePaths({ ...base, osVariant: "ubuntu 18.04" })).toContain("osVariant");
  });

  it("rejects a label value with a space", () => {
    expect(issuePaths({ ...base, labels: { team: "in fra" } })).toContain("labels.team");
  });

  it("rejects unknown keys at the top level (strict)", () => {
    const result = VmSpec.safeParse({ ...base, memory: 2048 });
    expect(result.success).toBe(false);
    if (result.success) return;
    const issue = result.error.issues.find((i) => i.code === "unrecognized_keys");
    expect(issue).toBeDefined();
    expect(issue && "keys" in issue ? issue.keys : []).toContain("memory");
  });

  it("rejects unknown keys in a disk (strict)", () => {
    const result = VmSpec.safeParse({ ...base, disks: [{ sizeGiB: 1, bus: "virtio" }] });
    expect(result.success).toBe(false);
    if (result.success) return;
    const issue = result.error.issues.find((i) => i.code === "unrecognized_keys");
    expect(issue?.path).toEqual(["disks", 0]);
    expect(issue && "keys" in issue ? issue.keys : []).toEqual(["bus"]);
  });

  it("rejects unknown keys in install and networks (strict)", () => {
    expect(VmSpec.safeParse({ ...base, install: { method: "import", image: "x.iso" } }).success).toBe(false);
    expect(VmSpec.safeParse({ ...base, networks: [{ type: "bridge", bridge: "virbr0", speed: 10 }] }).success).toBe(
      false,
    );
  });
});

describe("specFingerprint", () => {
  const spec = VmSpec.parse({
    ...base,
    networks: [{ type: "bridge", bridge: "virbr0", model: "virtio" }],
    labels: { a: "1", b: "2" },
  });

  it("is 64 hex characters", () => {
    expect(specFingerprint(spec)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("is the same for the same spec, whatever the key order", () => {
    const reordered = VmSpec.parse({
      labels: { b: "2", a: "1" },
      networks: [{ model: "virtio", bridge: "virbr0", type: "bridge" }],
      disks: [{ sizeGiB: 20 }],
      vcpus: 1,
      memoryMiB: 2048,
      name: "budgie",
    });
    expect(specFingerprint(reordered)).toBe(specFingerprint(spec));
    // Not merely because the parser reorders: the raw objects differ in order, too.
    const shuffled = Object.fromEntries(Object.entries(spec).reverse()) as VmSpec;
    expect(Object.keys(shuffled)).not.toEqual(Object.keys(spec));
    expect(specFingerprint(shuffled)).toBe(specFingerprint(spec));
  });

  it("differs when the spec differs", () => {
    const fp = specFingerprint(spec);
    expect(specFingerprint({ ...spec, memoryMiB: 4096 })).not.toBe(fp);
    expect(specFingerprint({ ...spec, name: "other" })).not.toBe(fp);
    expect(specFingerprint({ ...spec, disks: [{ sizeGiB: 21, format: "qcow2" }] })).not.toBe(fp);
    expect(specFingerprint({ ...spec, labels: { a: "1" } })).not.toBe(fp);
  });

  it("ignores undefined properties", () => {
    expect(specFingerprint({ ...spec, virtType: undefined })).toBe(specFingerprint(spec));
  });

  it("is the sha256 of the spec's stable JSON (fingerprints kept in records stay valid)", () => {
    const text = stableStringify(spec);
    expect(specFingerprint(spec)).toBe(createHash("sha256").update(text).digest("hex"));
    // The fingerprint of `base` as every earlier version computed it.
    expect(specFingerprint(VmSpec.parse(base))).toBe(
      "76b2f0b527ebe24ca3d0230cad306af75c03c7d040ae306101632ed2ba72a5f8",
    );
  });
});

describe("stableStringify", () => {
  it("sorts keys at every depth and keeps array order", () => {
    expect(stableStringify({ b: [{ y: 1, x: 2 }], a: null })).toBe('{"a":null,"b":[{"x":2,"y":1}]}');
    expect(stableStringify([2, 1])).toBe("[2,1]");
  });
});

describe("VmSpec: bounded size", () => {
  const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));

  it(`takes up to ${MAX_LABELS} labels and refuses more, naming labels`, () => {
    expect(VmSpec.safeParse({ ...base, labels: labels(MAX_LABELS) }).success).toBe(true);
    expect(issuePaths({ ...base, labels: labels(MAX_LABELS + 1) })).toEqual(["labels"]);
  });

  it("counts a VM's disks in whole GiB", () => {
    expect(totalDiskGiB({ disks: [{ sizeGiB: 0.5 }, { sizeGiB: 2 }] })).toBe(3);
    expect(totalDiskGiB({ disks: [] })).toBe(0);
  });
});
