import { describe, expect, it } from "vitest";
import { ValidationError } from "./errors.js";
import { networkAllowed, networkEntry, parseNetworkAllowList } from "./network-allow.js";

const bridge = (name: string) => ({ type: "bridge" as const, bridge: name });
const network = (name: string) => ({ type: "network" as const, network: name });

describe("network allow-lists", () => {
  it("NAME and bridge=NAME allow a bridge, network=NAME a libvirt network, and nothing else", () => {
    const list = parseNetworkAllowList(["br-lab", "bridge=br-two", "network=lab"]);
    expect(networkAllowed(list, bridge("br-lab"))).toBe(true);
    expect(networkAllowed(list, bridge("br-two"))).toBe(true);
    expect(networkAllowed(list, network("lab"))).toBe(true);
    expect(networkAllowed(list, network("br-lab"))).toBe(false);
    expect(networkAllowed(list, bridge("lab"))).toBe(false);
    expect(networkAllowed(list, bridge("br-mgmt"))).toBe(false);
    expect(networkAllowed(list, network("default"))).toBe(false);
  });

  it("the empty list allows no network; * allows any", () => {
    const none = parseNetworkAllowList([]);
    expect(networkAllowed(none, bridge("br0"))).toBe(false);
    expect(networkAllowed(none, network("default"))).toBe(false);
    const any = parseNetworkAllowList(["*"]);
    expect(networkAllowed(any, bridge("br0"))).toBe(true);
    expect(networkAllowed(any, network("default"))).toBe(true);
  });

  it("a bad entry is a ValidationError naming its index", () => {
    for (const bad of ["", "bridge=", "network=a b", "vlan=3", "br0,br1", "*x", "-br", "a".repeat(65)]) {
      const error = (() => {
        try {
          parseNetworkAllowList(["br-ok", bad], "networks");
        } catch (e) {
          return e;
        }
      })();
      expect(error, bad).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe("networks.1");
    }
  });

  it("names a network as an entry would", () => {
    expect(networkEntry(bridge("br0"))).toBe("bridge=br0");
    expect(networkEntry({ ...network("lab"), model: "virtio" })).toBe("network=lab");
  });
});
