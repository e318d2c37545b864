import { hasImage, PlacementOptions, parseNetworkAllowList, VmSpec } from "@virtfleet/core";
import { describe, expect, it } from "vitest";
import {
  explainNoRoom,
  type HostCandidate,
  holdsImages,
  networkRefusal,
  rankHosts,
  rejectHost,
  requiredImages,
} from "./eligibility.js";

/** A 1 GiB, 1 vCPU VM booting from a plain disk: needs no image and no virt type. */
const spec = VmSpec.parse({ name: "budgie", memoryMiB: 1024, vcpus: 1, disks: [{ sizeGiB: 10 }] });
const spread = PlacementOptions.parse({});
const pack = PlacementOptions.parse({ policy: "pack" });

/** An up, idle host with 8 GiB and 8 vCPUs, the `tiny` image and both virt types. */
function host(hostId: string, extra: Partial<HostCandidate> = {}): HostCandidate {
  return {
    hostId,
    up: true,
    draining: false,
    labels: {},
    images: ["tiny.qcow2"],
    virtTypes: ["kvm", "qemu"],
    capacity: { memoryMiB: 8192, vcpus: 8 },
    allocated: { memoryMiB: 0, vcpus: 0 },
    groupMembers: 0,
    ...extra,
  };
}

/** A host with `freeMiB` of its 8 GiB unclaimed. */
function withFree(hostId: string, freeMiB: number, extra: Partial<HostCandidate> = {}): HostCandidate {
  return host(hostId, { allocated: { memoryMiB: 8192 - freeMiB, vcpus: 0 }, ...extra });
}

describe("catalogued images", () => {
  const needs = VmSpec.parse({
    name: "imgvm",
    memoryMiB: 1024,
    vcpus: 1,
    disks: [{ sizeGiB: 10, backing: "deb" }],
  });

  it("a host that lacks a catalogued image it can pull is still eligible; one that cannot pull it is not", () => {
    expect(rejectHost(host("a", { images: [] }), needs, spread)).toBe("image");
    expect(rejectHost(host("a", { images: [], pullable: ["deb"] }), needs, spread)).toBeUndefined();
    expect(rejectHost(host("a", { images: ["deb.qcow2"] }), needs, spread)).toBeUndefined();
  });

  it("hosts that hold the image come first, even with less room; then by policy", () => {
    const hosts = [
      withFree("roomy-pulls", 8000, { images: [], pullable: ["deb"] }),
      withFree("tight-holds", 2048, { images: ["deb.qcow2"], pullable: ["deb"] }),
      withFree("mid-holds", 4096, { images: ["deb.qcow2"], pullable: ["deb"] }),
    ];
    expect(rankHosts(hosts, needs, spread)).toEqual(["mid-holds", "tight-holds", "roomy-pulls"]);
    expect(holdsImages(hosts[0] as HostCandidate, needs)).toBe(false);
    expect(holdsImages(hosts[1] as HostCandidate, needs)).toBe(true);
  });

  it("anti-affinity still comes before holding the image", () => {
    const hosts = [
      withFree("holds-crowded", 4096, { images: ["deb.qcow2"], groupMembers: 1 }),
      withFree("pulls-empty", 4096, { images: [], pullable: ["deb"], groupMembers: 0 }),
    ];
    expect(rankHosts(hosts, needs, spread)).toEqual(["pulls-empty", "holds-crowded"]);
  });
});

describe("PlacementOptions", () => {
  it("defaults to spread with no required labels", () => {
    expect(spread).toEqual({ requiredLabels: {}, policy: "spread" });
  });
});

describe("rankHosts: policy", () => {
  const hosts = [withFree("a", 2048), withFree("b", 6144), withFree("c", 4096)];

  it("spread puts the host with the most free memory first", () => {
    expect(rankHosts(hosts, spec, spread)).toEqual(["b", "c", "a"]);
  });

  it("pack puts the host with the least free memory first", () => {
    expect(rankHosts(hosts, spec, pack)).toEqual(["a", "c", "b"]);
  });

  it("spread is the default policy", () => {
    expect(rankHosts(hosts, spec, PlacementOptions.parse({ requiredLabels: {} }))).toEqual(["b", "c", "a"]);
  });

  it("ranks by free memory, not by free vCPUs", () => {
    const byMemory = [
      host("m", { allocated: { memoryMiB: 0, vcpus: 7 } }),
      host("v", { allocated: { memoryMiB: 4096, vcpus: 0 } }),
    ];
    expect(rankHosts(byMemory, spec, spread)).toEqual(["m", "v"]);
    expect(rankHosts(byMemory, spec, pack)).toEqual(["v", "m"]);
  });

  it("counts free memory against each host's own capacity", () => {
    const big = host("big", { capacity: { memoryMiB: 65536, vcpus: 8 }, allocated: { memoryMiB: 32768, vcpus: 0 } });
    const small = host("small", { capacity: { memoryMiB: 4096, vcpus: 8 } });
    expect(rankHosts([small, big], spec, spread)).toEqual(["big", "small"]);
    expect(rankHosts([small, big], spec, pack)).toEqual(["small", "big"]);
  });

  it("breaks ties by host id, whatever the input order and policy", () => {
    const tied = [withFree("h3", 4096), withFree("h1", 4096), withFree("h2", 4096)];
    expect(rankHosts(tied, spec, spread)).toEqual(["h1", "h2", "h3"]);
    expect(rankHosts(tied, spec, pack)).toEqual(["h1", "h2", "h3"]);
    expect(rankHosts([...tied].reverse(), spec, spread)).toEqual(["h1", "h2", "h3"]);
  });

  it("breaks ties by host id only among equals", () => {
    const hostsB = [withFree("z", 4096), withFree("b", 2048), withFree("a", 2048)];
    expect(rankHosts(hostsB, spec, spread)).toEqual(["z", "a", "b"]);
    expect(rankHosts(hostsB, spec, pack)).toEqual(["a", "b", "z"]);
  });

  it("does not change its input", () => {
    const input = [withFree("a", 2048), withFree("b", 6144)];
    const copy = structuredClone(input);
    rankHosts(input, spec, spread);
    expect(input).toEqual(copy);
  });

  it("returns nothing for no hosts", () => {
    expect(rankHosts([], spec, spread)).toEqual([]);
  });
});

describe("rankHosts: anti-affinity", () => {
  const grouped = PlacementOptions.parse({ group: "web" });

  it("puts hosts with fewer group members first, over the spread policy", () => {
    const hosts = [withFree("roomy", 8192, { groupMembers: 1 }), withFree("tight", 2048, { groupMembers: 0 })];
    expect(rankHosts(hosts, spec, grouped)).toEqual(["tight", "roomy"]);
  });

  it("puts hosts with fewer group members first, over the pack policy", () => {
    const hosts = [withFree("full", 2048, { groupMembers: 2 }), withFree("empty", 8192, { groupMembers: 1 })];
    expect(rankHosts(hosts, spec, PlacementOptions.parse({ group: "web", policy: "pack" }))).toEqual(["empty", "full"]);
  });

  it("orders by group members, then by policy, then by id", () => {
    const hosts = [
      withFree("a", 8192, { groupMembers: 2 }),
      withFree("b", 2048, { groupMembers: 0 }),
      withFree("c", 6144, { groupMembers: 0 }),
      withFree("d", 6144, { groupMembers: 1 }),
      withFree("e", 4096, { groupMembers: 1 }),
      withFree("f", 4096, { groupMembers: 1 }),
    ];
    expect(rankHosts(hosts, spec, grouped)).toEqual(["c", "b", "d", "e", "f", "a"]);
    expect(rankHosts(hosts, spec, PlacementOptions.parse({ group: "web", policy: "pack" }))).toEqual([
      "b",
      "c",
      "e",
      "f",
      "d",
      "a",
    ]);
  });

  it("still filters out hosts that cannot take the VM, however few members they have", () => {
    const hosts = [withFree("lonely", 512, { groupMembers: 0 }), withFree("crowded", 8192, { groupMembers: 5 })];
    expect(rankHosts(hosts, spec, grouped)).toEqual(["crowded"]);
  });
});

describe("rejectHost and rankHosts: filters", () => {
  it("accepts a healthy host with room", () => {
    expect(rejectHost(host("ok"), spec, spread)).toBeUndefined();
  });

  it("rejects a host whose allow-list lacks one of the spec's networks, and takes any network when it has none", () => {
    const nics = VmSpec.parse({
      ...spec,
      networks: [
        { type: "bridge", bridge: "br-lab" },
        { type: "network", network: "lab" },
      ],
    });
    const both = parseNetworkAllowList(["br-lab", "network=lab"]);
    expect(rejectHost(host("both", { networks: both }), nics, spread)).toBeUndefined();
    expect(rejectHost(host("any"), nics, spread)).toBeUndefined();
    const bridgeOnly = host("bridge-only", { networks: parseNetworkAllowList(["bridge=br-lab"]) });
    expect(rejectHost(bridgeOnly, nics, spread)).toBe("network");
    // An empty list offers no network at all, but still takes a VM without a NIC.
    const none = host("none", { networks: [] });
    expect(rejectHost(none, nics, spread)).toBe("network");
    expect(rejectHost(none, spec, spread)).toBeUndefined();
    // A full host that lacks the network is turned down for the network, not for room.
    expect(rejectHost(withFree("full", 0, { networks: [] }), nics, spread)).toBe("network");
    expect(rankHosts([bridgeOnly, none, host("both", { networks: both })], nics, spread)).toEqual(["both"]);
    expect(explainNoRoom([bridgeOnly, none], nics, spread)).toContain("2 not offering the networks");
  });

  it("networkRefusal: FORBIDDEN naming the first NIC no up host (or the pinned host) offers", () => {
    const nics = VmSpec.parse({
      ...spec,
      networks: [
        { type: "bridge", bridge: "br-lab" },
        { type: "network", network: "lab" },
      ],
    });
    const a = host("a", { networks: parseNetworkAllowList(["br-lab"]) });
    const b = host("b", { networks: parseNetworkAllowList(["network=lab"]) });
    const down = host("down", { up: false });
    expect(networkRefusal([a, down], nics)).toMatchObject({
      code: "FORBIDDEN",
      field: "spec.networks.1",
      message: "no host that is up offers the network network=lab",
    });
    expect(networkRefusal([a, b], nics)).toMatchObject({ code: "FORBIDDEN", field: "spec.networks" });
    expect(networkRefusal([a, b, host("any")], nics)).toBeUndefined();
    expect(networkRefusal([down], nics)).toBeUndefined();
    expect(networkRefusal([a, host("any")], nics, "a")).toMatchObject({
      code: "FORBIDDEN",
      field: "spec.networks.1",
      message: 'host "a" does not offer the network network=lab',
    });
    expect(networkRefusal([a], nics, "any")).toBeUndefined();
  });

  it("rejects a host that is down", () => {
    const h = host("down", { up: false });
    expect(rejectHost(h, spec, spread)).toBe("down");
    expect(rankHosts([h, host("ok")], spec, spread)).toEqual(["ok"]);
  });

  it("rejects a draining host", () => {
    const h = host("drain", { draining: true });
    expect(rejectHost(h, spec, spread)).toBe("draining");
    expect(rankHosts([h, host("ok")], spec, spread)).toEqual(["ok"]);
  });

  it("rejects a host missing a required label or with another value", () => {
    const options = PlacementOptions.parse({ requiredLabels: { zone: "a", ssd: "yes" } });
    const good = host("good", { labels: { zone: "a", ssd: "yes", extra: "x" } });
    const wrongValue = host("wrong", { labels: { zone: "b", ssd: "yes" } });
    const missing = host("missing", { labels: { zone: "a" } });
    const none = host("none");
    expect(rejectHost(good, spec, options)).toBeUndefined();
    expect(rejectHost(wrongValue, spec, options)).toBe("labels");
    expect(rejectHost(missing, spec, options)).toBe("labels");
    expect(rejectHost(none, spec, options)).toBe("labels");
    expect(rankHosts([none, missing, wrongValue, good], spec, options)).toEqual(["good"]);
  });

  it("matches an empty label value only when the host has the label, empty", () => {
    const options = PlacementOptions.parse({ requiredLabels: { gpu: "" } });
    expect(rejectHost(host("with", { labels: { gpu: "" } }), spec, options)).toBeUndefined();
    expect(rejectHost(host("without"), spec, options)).toBe("labels");
  });

  it("ignores labels when none are required", () => {
    expect(rejectHost(host("l", { labels: { zone: "a" } }), spec, spread)).toBeUndefined();
  });

  it("rejects a host missing an image the VM needs", () => {
    const linked = VmSpec.parse({
      name: "clone",
      memoryMiB: 512,
      vcpus: 1,
      disks: [{ sizeGiB: 10, backing: "debian" }],
    });
    const withImage = host("with", { images: ["tiny.qcow2", "debian.qcow2"] });
    const without = host("without", { images: ["tiny.qcow2"] });
    expect(rejectHost(withImage, linked, spread)).toBeUndefined();
    expect(rejectHost(without, linked, spread)).toBe("image");
    expect(rankHosts([without, withImage], linked, spread)).toEqual(["with"]);
  });

  it("needs every image, not just one", () => {
    const kernel = VmSpec.parse({
      name: "k",
      memoryMiB: 512,
      vcpus: 1,
      install: { method: "kernel", kernel: "vmlinuz", initrd: "initrd.img" },
    });
    expect(rejectHost(host("both", { images: ["vmlinuz", "initrd.img"] }), kernel, spread)).toBeUndefined();
    expect(rejectHost(host("kernel-only", { images: ["vmlinuz"] }), kernel, spread)).toBe("image");
    expect(rejectHost(host("initrd-only", { images: ["initrd.img"] }), kernel, spread)).toBe("image");
  });

  it("rejects a host that cannot run the requested virt type", () => {
    const kvm = VmSpec.parse({ name: "fast", memoryMiB: 512, vcpus: 1, disks: [{ sizeGiB: 1 }], virtType: "kvm" });
    const qemuOnly = host("qemu-only", { virtTypes: ["qemu"] });
    expect(rejectHost(qemuOnly, kvm, spread)).toBe("virt-type");
    expect(rejectHost(host("both"), kvm, spread)).toBeUndefined();
    expect(rankHosts([qemuOnly, host("both")], kvm, spread)).toEqual(["both"]);
  });

  it("accepts any virt type when the spec names none", () => {
    expect(rejectHost(host("none", { virtTypes: [] }), spec, spread)).toBeUndefined();
  });

  it("rejects a host without the memory", () => {
    const h = withFree("tight", 1023);
    expect(rejectHost(h, spec, spread)).toBe("room");
    expect(rankHosts([h], spec, spread)).toEqual([]);
  });

  it("rejects a host without the vCPUs", () => {
    const h = host("busy", { allocated: { memoryMiB: 0, vcpus: 8 } });
    expect(rejectHost(h, spec, spread)).toBe("room");
    expect(rankHosts([h], spec, spread)).toEqual([]);
  });

  it("accepts a VM that exactly fills the host", () => {
    const exact = host("exact", { allocated: { memoryMiB: 7168, vcpus: 7 } });
    expect(rejectHost(exact, spec, spread)).toBeUndefined();
    expect(rankHosts([exact], spec, pack)).toEqual(["exact"]);
    const big = VmSpec.parse({ name: "big", memoryMiB: 8192, vcpus: 8, disks: [{ sizeGiB: 1 }] });
    expect(rejectHost(host("empty"), big, spread)).toBeUndefined();
    expect(rejectHost(host("one-used", { allocated: { memoryMiB: 0, vcpus: 1 } }), big, spread)).toBe("room");
  });

  it("reports the first reason in order: down, draining, labels, image, virt type, room", () => {
    const needy = VmSpec.parse({
      name: "needy",
      memoryMiB: 16384,
      vcpus: 1,
      disks: [{ sizeGiB: 1, backing: "absent" }],
      virtType: "kvm",
    });
    const options = PlacementOptions.parse({ requiredLabels: { zone: "a" } });
    const worst: Partial<HostCandidate> = { up: false, draining: true, virtTypes: ["qemu"] };
    expect(rejectHost(host("h", worst), needy, options)).toBe("down");
    expect(rejectHost(host("h", { ...worst, up: true }), needy, options)).toBe("draining");
    expect(rejectHost(host("h", { ...worst, up: true, draining: false }), needy, options)).toBe("labels");
    const labelled = { ...worst, up: true, draining: false, labels: { zone: "a" } };
    expect(rejectHost(host("h", labelled), needy, options)).toBe("image");
    expect(rejectHost(host("h", { ...labelled, images: ["absent.qcow2"] }), needy, options)).toBe("virt-type");
    expect(rejectHost(host("h", { ...labelled, images: ["absent.qcow2"], virtTypes: ["kvm"] }), needy, options)).toBe(
      "room",
    );
  });

  it("keeps only the hosts that pass every filter", () => {
    const options = PlacementOptions.parse({ requiredLabels: { zone: "a" } });
    const labels = { zone: "a" };
    const hosts = [
      host("down", { up: false, labels }),
      host("draining", { draining: true, labels }),
      host("unlabelled"),
      withFree("full", 512, { labels }),
      withFree("ok-small", 2048, { labels }),
      withFree("ok-big", 4096, { labels }),
    ];
    expect(rankHosts(hosts, spec, options)).toEqual(["ok-big", "ok-small"]);
    expect(rankHosts(hosts, spec, PlacementOptions.parse({ requiredLabels: { zone: "a" }, policy: "pack" }))).toEqual([
      "ok-small",
      "ok-big",
    ]);
  });
});

describe("hasImage", () => {
  it("matches the exact name", () => {
    expect(hasImage(["tiny"], "tiny")).toBe(true);
    expect(hasImage(["tiny.qcow2"], "tiny.qcow2")).toBe(true);
  });

  it("matches the name plus one suffix", () => {
    expect(hasImage(["tiny.qcow2"], "tiny")).toBe(true);
    expect(hasImage(["tiny.raw"], "tiny")).toBe(true);
  });

  it("does not match another image that starts with the name", () => {
    expect(hasImage(["tiny2.qcow2"], "tiny")).toBe(false);
    expect(hasImage(["tiny2"], "tiny")).toBe(false);
    expect(hasImage(["tiny-big.qcow2"], "tiny")).toBe(false);
  });

  it("does not match the name plus more than one suffix", () => {
    expect(hasImage(["tiny.qcow2.bak"], "tiny")).toBe(false);
    expect(hasImage(["tiny.qcow2.bak"], "tiny.qcow2")).toBe(true);
  });

  it("does not match a shorter name", () => {
    expect(hasImage(["tin.qcow2"], "tiny")).toBe(false);
    expect(hasImage(["tiny"], "tiny.qcow2")).toBe(false);
  });

  it("looks through the whole store", () => {
    expect(hasImage(["a.qcow2", "tiny2.qcow2", "tiny.qcow2.bak", "tiny.qcow2"], "tiny")).toBe(true);
    expect(hasImage(["a.qcow2", "tiny2.qcow2", "tiny.qcow2.bak"], "tiny")).toBe(false);
    expect(hasImage([], "tiny")).toBe(false);
  });
});

describe("requiredImages", () => {
  it("needs nothing for an import from plain disks", () => {
    expect(requiredImages(spec)).toEqual([]);
  });

  it("needs the backing image of each linked disk", () => {
    const s = VmSpec.parse({
      name: "linked",
      memoryMiB: 512,
      vcpus: 1,
      disks: [{ sizeGiB: 10, backing: "debian" }, { sizeGiB: 5 }, { sizeGiB: 20, backing: "data.qcow2" }],
    });
    expect(requiredImages(s)).toEqual(["debian", "data.qcow2"]);
  });

  it("needs the install image of a cdrom install", () => {
    const s = VmSpec.parse({
      name: "cd",
      memoryMiB: 512,
      vcpus: 1,
      disks: [{ sizeGiB: 10 }],
      install: { method: "cdrom", image: "debian.iso" },
    });
    expect(requiredImages(s)).toEqual(["debian.iso"]);
  });

  it("needs the kernel and initrd of a kernel boot, with the backing disk", () => {
    const s = VmSpec.parse({
      name: "kboot",
      memoryMiB: 512,
      vcpus: 1,
      disks: [{ sizeGiB: 10, backing: "rootfs" }],
      install: { method: "kernel", kernel: "vmlinuz", initrd: "initrd.img", kernelArgs: "console=ttyS0" },
    });
    expect(requiredImages(s)).toEqual(["rootfs", "vmlinuz", "initrd.img"]);
  });

  it("needs only the kernel when there is no initrd", () => {
    const s = VmSpec.parse({
      name: "kboot",
      memoryMiB: 512,
      vcpus: 1,
      install: { method: "kernel", kernel: "vmlinuz" },
    });
    expect(requiredImages(s)).toEqual(["vmlinuz"]);
  });

  it("does not change the spec", () => {
    const s = VmSpec.parse({
      name: "kboot",
      memoryMiB: 512,
      vcpus: 1,
      disks: [{ sizeGiB: 10, backing: "rootfs" }],
      install: { method: "kernel", kernel: "vmlinuz" },
    });
    const copy = structuredClone(s);
    requiredImages(s);
    requiredImages(s);
    expect(s).toEqual(copy);
    expect(requiredImages(s)).toEqual(["rootfs", "vmlinuz"]);
  });
});

describe("explainNoRoom", () => {
  it("says no host is registered when there are none", () => {
    expect(explainNoRoom([], spec, spread)).toBe("no host is registered in the fleet");
  });

  it("names the VM's size", () => {
    const text = explainNoRoom([withFree("full", 0)], spec, spread);
    expect(text).toContain("1024 MiB");
    expect(text).toContain("1 vCPU(s)");
    expect(text).toContain("1 without room");
  });

  it("counts the hosts turned down for each reason", () => {
    const needy = VmSpec.parse({
      name: "needy",
      memoryMiB: 2048,
      vcpus: 2,
      disks: [{ sizeGiB: 1, backing: "base" }],
      virtType: "kvm",
    });
    const options = PlacementOptions.parse({ requiredLabels: { zone: "a" } });
    const ok: Partial<HostCandidate> = { labels: { zone: "a" }, images: ["base.qcow2"] };
    const hosts = [
      host("d1", { ...ok, up: false }),
      host("d2", { ...ok, up: false }),
      host("d3", { ...ok, up: false }),
      host("dr", { ...ok, draining: true }),
      host("l1", { ...ok, labels: {} }),
      host("l2", { ...ok, labels: { zone: "b" } }),
      host("i1", { ...ok, images: [] }),
      host("i2", { ...ok, images: ["base2.qcow2"] }),
      host("i3", { ...ok, images: ["base.qcow2.bak"] }),
      host("i4", { ...ok, images: ["other"] }),
      host("v1", { ...ok, virtTypes: ["qemu"] }),
      withFree("r1", 1024, ok),
      withFree("r2", 0, ok),
    ];
    const text = explainNoRoom(hosts, needy, options);
    expect(text).toMatch(/^no host can take 2048 MiB and 2 vCPU\(s\): /);
    expect(text).toContain("3 down");
    expect(text).toContain("1 draining");
    expect(text).toContain("2 without the labels");
    expect(text).toContain("4 without the images");
    expect(text).toContain("1 without the virt type");
    expect(text).toContain("2 without room");
  });

  it("mentions only the reasons that occurred", () => {
    const text = explainNoRoom([host("a", { up: false }), host("b", { up: false })], spec, spread);
    expect(text).toBe("no host can take 1024 MiB and 1 vCPU(s): 2 down");
    expect(text).not.toContain("draining");
    expect(text).not.toContain("room");
  });

  it("counts a host that seems to have room as without room (the claim lost a race)", () => {
    expect(explainNoRoom([host("ok")], spec, spread)).toBe("no host can take 1024 MiB and 1 vCPU(s): 1 without room");
  });
});
