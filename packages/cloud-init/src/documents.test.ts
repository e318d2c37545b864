import { CloudInitSpec } from "@virtfleet/core";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { cloudInitMetaData, cloudInitUserData, generatedCloudConfig, seedDocuments } from "./documents.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmNLnNNqH7F1XJSa3EhiJld54ElWMa+JBeqTbwO+xfX alice@lab";
const ROOT_KEY =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNn/VA8SjZjOCrskBFB24vYZjudG8ftbakEjhimDS0+yZ9H1EMKDaxLFe9QrotzAjljQas508yyIUhC+nfdF7GA= root@lab";

const spec = (input: unknown) => CloudInitSpec.parse(input);

describe("user-data", () => {
  it("is generated from keys and hostname when none is given", () => {
    const text = cloudInitUserData(
      spec({ sshAuthorizedKeys: [KEY], rootSshAuthorizedKeys: [ROOT_KEY], hostname: "web-1" }),
    );
    expect(text.split("\n")[0]).toBe("#cloud-config");
    expect(parse(text)).toEqual({
      hostname: "web-1",
      ssh_authorized_keys: [KEY],
      users: ["default", { name: "root", ssh_authorized_keys: [ROOT_KEY] }],
      disable_root: false,
    });
  });

  it("is an empty #cloud-config when the spec gives nothing for it", () => {
    expect(generatedCloudConfig(spec({}))).toBe("#cloud-config\n");
    expect(cloudInitUserData(spec({ networkConfig: "version: 2\n" }))).toBe("#cloud-config\n");
  });

  it("is the caller's text byte for byte when nothing is to be added", () => {
    const userData = "#cloud-config\n# a comment\npackages:   [htop]\n";
    expect(cloudInitUserData(spec({ userData }))).toBe(userData);
    const script = "#!/bin/sh\necho hi\n";
    expect(cloudInitUserData(spec({ userData: script }))).toBe(script);
  });

  it("merges keys into a #cloud-config: appended without duplicates, comments kept, hostname set", () => {
    const userData = [
      "#cloud-config",
      "# keep me",
      "packages: [htop]",
      "hostname: old",
      "ssh_authorized_keys:",
      `  - ${KEY}`,
      "  - ssh-ed25519 AAAAexisting other@lab",
      "users:",
      "  - default",
      "  - name: root",
      "    lock_passwd: true",
      "disable_root: true",
      "",
    ].join("\n");
    const text = cloudInitUserData(
      spec({ userData, sshAuthorizedKeys: [KEY], rootSshAuthorizedKeys: [ROOT_KEY], hostname: "new" }),
    );
    expect(text.split("\n")[0]).toBe("#cloud-config");
    expect(text).toContain("# keep me");
    expect(parse(text)).toEqual({
      packages: ["htop"],
      hostname: "new",
      ssh_authorized_keys: [KEY, "ssh-ed25519 AAAAexisting other@lab"],
      users: ["default", { name: "root", lock_passwd: true, ssh_authorized_keys: [ROOT_KEY] }],
      // what the caller says about root wins
      disable_root: true,
    });
  });

  it("adds root to a users list that lacks it, and keys to a cloud-config that has none", () => {
    const text = cloudInitUserData(
      spec({
        userData: "#cloud-config\nusers:\n  - name: bob\n",
        sshAuthorizedKeys: [KEY],
        rootSshAuthorizedKeys: [ROOT_KEY],
      }),
    );
    expect(parse(text)).toEqual({
      users: [{ name: "bob" }, { name: "root", ssh_authorized_keys: [ROOT_KEY] }],
      ssh_authorized_keys: [KEY],
      disable_root: false,
    });
  });

  it("wraps a #! script and the generated cloud-config in a MIME multipart", () => {
    const script = "#!/bin/sh\necho hi\n";
    const text = cloudInitUserData(spec({ userData: script, sshAuthorizedKeys: [KEY] }));
    const boundary = /^Content-Type: multipart\/mixed; boundary="([^"]+)"\n/.exec(text)?.[1];
    expect(boundary).toMatch(/^==virtfleet-[0-9a-f]{32}==$/);
    const parts = text.split(`--${boundary}`);
    expect(parts).toHaveLength(4); // headers, cloud-config, script, "--" closing
    expect(parts[1]).toContain("Content-Type: text/cloud-config");
    expect(parts[1]).toContain(`\n\n#cloud-config\nssh_authorized_keys:\n  - ${KEY}\n`);
    expect(parts[2]).toContain("Content-Type: text/x-shellscript");
    expect(parts[2]?.endsWith(`\n\n${script}`)).toBe(true);
    expect(parts[3]).toBe("--\n");
  });
});

describe("meta-data", () => {
  it("holds the instance id and the VM's name, then the caller's keys", () => {
    const text = cloudInitMetaData(spec({ metaData: "public-keys: [a]\n" }), "job-42", "ci-vm");
    expect(text.split("\n").slice(0, 2)).toEqual(["instance-id: job-42", "local-hostname: ci-vm"]);
    expect(parse(text)).toEqual({ "instance-id": "job-42", "local-hostname": "ci-vm", "public-keys": ["a"] });
  });
});

describe("seedDocuments", () => {
  it("has network-config only when given, as given", () => {
    expect(Object.keys(seedDocuments(spec({}), "j", "v"))).toEqual(["user-data", "meta-data"]);
    const networkConfig = "version: 2\nethernets:\n  id0:\n    match: {macaddress: '52:54:00:00:00:01'}\n";
    expect(seedDocuments(spec({ networkConfig }), "j", "v")["network-config"]).toBe(networkConfig);
  });
});
