import { describe, expect, it } from "vitest";
import { CloudInitSpec, MAX_CLOUD_INIT_DOCUMENT_BYTES, SshPublicKey } from "./cloud-init.js";
import { VmSpec } from "./vm-spec.js";

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmNLnNNqH7F1XJSa3EhiJld54ElWMa+JBeqTbwO+xfX alice@lab";
const ECDSA =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNn/VA8SjZjOCrskBFB24vYZjudG8ftbakEjhimDS0+yZ9H1EMKDaxLFe9QrotzAjljQas508yyIUhC+nfdF7GA= root@lab";

const base = { name: "ci-a", memoryMiB: 128, vcpus: 1, disks: [{ sizeGiB: 1 }] };

/** Each issue as `path: message` when `cloudInit` fails (fails the test when it parses). */
function issues(cloudInit: unknown): string[] {
  const result = VmSpec.safeParse({ ...base, cloudInit });
  expect(result.success).toBe(false);
  if (result.success) return [];
  return result.error.issues.map((i) => `${i.path.map(String).join(".")}: ${i.message}`);
}

describe("CloudInitSpec", () => {
  it("accepts every field and keeps the text as given", () => {
    const userData = "#cloud-config\npackages: [htop]\n";
    const spec = VmSpec.parse({
      ...base,
      cloudInit: {
        userData,
        metaData: "public-keys: []\n",
        networkConfig: "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n",
        sshAuthorizedKeys: [ED25519],
        rootSshAuthorizedKeys: [` ${ECDSA} `],
        hostname: "web-1.lab.example",
      },
    });
    expect(spec.cloudInit?.userData).toBe(userData);
    expect(spec.cloudInit?.rootSshAuthorizedKeys).toEqual([ECDSA]);
  });

  it("accepts a #! script, an empty cloud-config and network config under network:", () => {
    expect(CloudInitSpec.safeParse({ userData: "#!/bin/sh\necho hi\n" }).success).toBe(true);
    expect(CloudInitSpec.safeParse({ userData: "#cloud-config\n" }).success).toBe(true);
    expect(CloudInitSpec.safeParse({ networkConfig: "network:\n  version: 1\n  config: []\n" }).success).toBe(true);
  });

  it("refuses user-data with another first line, naming the field", () => {
    expect(issues({ userData: "packages: [htop]\n" })).toEqual([
      'cloudInit.userData: must start with a "#cloud-config" line or a "#!" script line',
    ]);
    expect(issues({ userData: "#cloud-configx\na: 1\n" })[0]).toMatch(/^cloudInit\.userData: must start/);
    expect(issues({ userData: "" })[0]).toMatch(/^cloudInit\.userData: must not be empty/);
  });

  it("refuses a #cloud-config that is not a YAML mapping, or whose keys list is not a list", () => {
    expect(issues({ userData: "#cloud-config\na: [1\n" })[0]).toMatch(/^cloudInit\.userData: is not valid YAML/);
    expect(issues({ userData: "#cloud-config\n- a\n" })).toEqual([
      "cloudInit.userData: a #cloud-config document must be a YAML mapping",
    ]);
    expect(issues({ userData: "#cloud-config\nssh_authorized_keys: x\n" })).toEqual([
      'cloudInit.userData: its "ssh_authorized_keys" must be a list',
    ]);
  });

  it("holds each document to 64 KiB (bytes, not characters)", () => {
    const fill = (n: number) => `#!/bin/sh\n${"é".repeat(n)}`;
    const at = fill((MAX_CLOUD_INIT_DOCUMENT_BYTES - 10) / 2);
    expect(new TextEncoder().encode(at).length).toBe(MAX_CLOUD_INIT_DOCUMENT_BYTES);
    expect(CloudInitSpec.safeParse({ userData: at }).success).toBe(true);
    expect(issues({ userData: `${at}x` })[0]).toMatch(/^cloudInit\.userData: user-data must be at most 65536 bytes/);
    const net = `version: 2\n#${"x".repeat(MAX_CLOUD_INIT_DOCUMENT_BYTES)}\n`;
    expect(issues({ networkConfig: net })[0]).toMatch(/^cloudInit\.networkConfig: network-config must be at most/);
  });

  it("refuses network-config without version 1 or 2", () => {
    expect(issues({ networkConfig: "ethernets: {}\n" })).toEqual([
      'cloudInit.networkConfig: must be a YAML mapping with "version: 1" or "version: 2"',
    ]);
    expect(issues({ networkConfig: "version: 3\n" })[0]).toMatch(/^cloudInit\.networkConfig:/);
  });

  it("refuses meta-data that sets what virtfleet sets", () => {
    expect(issues({ metaData: "instance-id: x\n" })[0]).toMatch(/^cloudInit\.metaData: must not set "instance-id"/);
    expect(issues({ metaData: "local-hostname: x\n" })[0]).toMatch(/^cloudInit\.metaData: must not set/);
    expect(issues({ metaData: "[1, 2]\n" })).toEqual(["cloudInit.metaData: must be a YAML mapping"]);
  });

  it("refuses bad key lines, naming the key's index", () => {
    const [type, blob] = ED25519.split(" ") as [string, string];
    const bad = [
      "not a key",
      `command="/bin/sh" ${ED25519}`, // authorized_keys options
      `${type}`, // no key data
      `${type} !!notbase64!!`,
      `ssh-rsa ${blob} lies about its type`,
      `${type} ${blob.slice(0, 12)}`, // truncated
      `${ED25519}\nssh-ed25519 ${blob} second`, // two lines in one
    ];
    for (const line of bad) {
      const found = issues({ sshAuthorizedKeys: [ED25519, line] });
      expect(found[0], line).toMatch(/^cloudInit\.sshAuthorizedKeys\.1: /);
    }
    expect(issues({ rootSshAuthorizedKeys: ["x"] })[0]).toMatch(
      /^cloudInit\.rootSshAuthorizedKeys\.0: is not an OpenSSH public key/,
    );
    expect(SshPublicKey.safeParse(ECDSA).success).toBe(true);
  });

  it("refuses unknown fields and bad hostnames", () => {
    expect(issues({ userdata: "#cloud-config\n" })[0]).toMatch(/^cloudInit: /);
    expect(issues({ hostname: "bad_name" })[0]).toMatch(/^cloudInit\.hostname: /);
    expect(issues({ hostname: "-x" })[0]).toMatch(/^cloudInit\.hostname: /);
  });
});

describe("NetworkSpec mac", () => {
  it("takes a unicast MAC and keeps it lowercase", () => {
    const spec = VmSpec.parse({ ...base, networks: [{ type: "bridge", bridge: "br0", mac: "52:54:00:AB:cd:01" }] });
    expect(spec.networks[0]?.mac).toBe("52:54:00:ab:cd:01");
  });

  it("refuses a malformed or multicast MAC, naming the field", () => {
    for (const mac of ["52:54:00:ab:cd", "52-54-00-ab-cd-01", "01:00:5e:00:00:01", "zz:54:00:ab:cd:01"]) {
      const result = VmSpec.safeParse({ ...base, networks: [{ type: "network", network: "n", mac }] });
      expect(result.success, mac).toBe(false);
      if (!result.success) expect(result.error.issues[0]?.path.join(".")).toBe("networks.0.mac");
    }
  });
});
