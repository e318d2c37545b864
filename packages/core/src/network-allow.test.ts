import { describe, expect, it } from "vitest";
import {
  firstDisallowedNetwork,
  formatNetworkRef,
  type NetworkAllowList,
  networkAllowed,
  parseNetworkAllowList,
} from "./network-allow.js";
import type { NetworkSpec } from "./vm-spec.js";

const bridge = (name: string): NetworkSpec => ({ type: "bridge", bridge: name });
const network = (name: string): NetworkSpec => ({ type: "network", network: name });

describe("parseNetworkAllowList", () => {
  it("reads NAME and bridge=NAME as bridges, network=NAME as a libvirt network", () => {
    expect(parseNetworkAllowList(["br-lab", "bridge=br0", "network=lab"])).toEqual([
      { type: "bridge", name: "br-lab" },
      { type: "bridge", name: "br0" },
      { type: "network", name: "lab" },
    ]);
  });

  it("trims spaces and drops duplicates (br0 and bridge=br0 are one)", () => {
    expect(parseNetworkAllowList([" br0 ", "bridge=br0", "network = lab", "network=lab"])).toEqual([
      { type: "bridge", name: "br0" },
      { type: "network", name: "lab" },
    ]);
  });

  it("takes an empty list: no network at all", () => {
    expect(parseNetworkAllowList([])).toEqual([]);
  });

  it.each([
    [["br0", "mac=52:54:00:00:00:01"], "networks.1"],
    [[""], "networks.0"],
    [["bridge="], "networks.0"],
    [["network=a b"], "networks.0"],
    [["br0", "network=lab", "bridge=-x"], "networks.2"],
    [["x".repeat(65)], "networks.0"],
  ])("refuses %j naming %s", (entries, field) => {
    expect(() => parseNetworkAllowList(entries)).toThrow(expect.objectContaining({ code: "INVALID_SPEC", field }));
  });

  it("names the caller's field", () => {
    expect(() => parseNetworkAllowList(["a", "b=c"], "VIRTFLEET_ALLOWED_NETWORKS")).toThrow(
      expect.objectContaining({ field: "VIRTFLEET_ALLOWED_NETWORKS.1" }),
    );
  });
});

describe("networkAllowed", () => {
  const list: NetworkAllowList = parseNetworkAllowList(["br-lab", "network=lab"]);

  it("allows exactly the listed bridges and networks, whatever the NIC model", () => {
    expect(networkAllowed(list, bridge("br-lab"))).toBe(true);
    expect(networkAllowed(list, { type: "bridge", bridge: "br-lab", model: "e1000" })).toBe(true);
    expect(networkAllowed(list, network("lab"))).toBe(true);
    expect(networkAllowed(list, bridge("br-mgmt"))).toBe(false);
  });

  it("keeps bridges and libvirt networks apart: a name allowed as one is not allowed as the other", () => {
    expect(networkAllowed(list, network("br-lab"))).toBe(false);
    expect(networkAllowed(list, bridge("lab"))).toBe(false);
  });

  it("compares names exactly (no prefix, no case folding)", () => {
    expect(networkAllowed(list, bridge("br-lab2"))).toBe(false);
    expect(networkAllowed(list, bridge("BR-LAB"))).toBe(false);
  });

  it("allows anything without a list and nothing with an empty one", () => {
    expect(networkAllowed(undefined, bridge("br-mgmt"))).toBe(true);
    expect(networkAllowed([], bridge("br-lab"))).toBe(false);
  });
});

describe("firstDisallowedNetwork and formatNetworkRef", () => {
  it("gives the index of the first NIC not allowed", () => {
    const list = parseNetworkAllowList(["br-lab"]);
    expect(firstDisallowedNetwork(list, [bridge("br-lab"), network("x"), bridge("y")])).toBe(1);
    expect(firstDisallowedNetwork(list, [bridge("br-lab")])).toBeUndefined();
    expect(firstDisallowedNetwork([], [])).toBeUndefined();
  });

  it("writes the canonical form of a list entry and of a NIC", () => {
    expect(parseNetworkAllowList(["br0", "network=lab"]).map(formatNetworkRef)).toEqual(["bridge=br0", "network=lab"]);
    expect(formatNetworkRef(network("lab"))).toBe("network=lab");
    expect(formatNetworkRef({ type: "bridge", bridge: "br0", model: "virtio" })).toBe("bridge=br0");
  });
});

describe("the * entry", () => {
  it("allows any network; the empty list allows none", () => {
    const any = parseNetworkAllowList(["*"]);
    expect(formatNetworkRef(any[0] as NetworkAllowList[number])).toBe("*");
    expect(networkAllowed(any, bridge("br-mgmt"))).toBe(true);
    expect(networkAllowed(any, network("storage"))).toBe(true);
    expect(networkAllowed([], bridge("br-mgmt"))).toBe(false);
  });

  it("is only ever the whole entry", () => {
    for (const bad of ["*x", "bridge=*", "network=*"]) {
      expect(() => parseNetworkAllowList([bad])).toThrow();
    }
  });
});
