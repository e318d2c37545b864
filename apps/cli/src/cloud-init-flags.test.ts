import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseOrThrow, ValidationError, VmSpec } from "@virtfleet/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cachedReader, cloudInitFromFlags, type ReadTextFile, readTextFile } from "./cloud-init-flags.js";
import { flagForField, specFromFlags } from "./flags.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmNLnNNqH7F1XJSa3EhiJld54ElWMa+JBeqTbwO+xfX alice@lab";
const ROOT_KEY =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNn/VA8SjZjOCrskBFB24vYZjudG8ftbakEjhimDS0+yZ9H1EMKDaxLFe9QrotzAjljQas508yyIUhC+nfdF7GA= root@lab";

/** A reader over an in-memory set of files. */
function files(map: Record<string, string>): ReadTextFile {
  return (flag, p) => {
    const text = map[p];
    if (text === undefined) throw new ValidationError([{ field: flag, message: `cannot read ${p}` }]);
    return text;
  };
}

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error("expected a ValidationError");
}

describe("cloudInitFromFlags", () => {
  const read = files({
    "ud.yaml": "#cloud-config\npackages: [htop]\n",
    "md.yaml": "public-keys: []\n",
    "net.yaml": "version: 2\n",
    "root.pub": `${ROOT_KEY}\n`,
    "user.pub": `# my keys\n\n${KEY}\n`,
    "two.pub": `${KEY}\r\n${ROOT_KEY}\r\n`,
    "empty.pub": "# nothing\n",
  });

  it("is undefined without --cloud-init or --ssh-key", () => {
    expect(cloudInitFromFlags(undefined, [], read)).toBeUndefined();
  });

  it("reads every virt-install sub-option's file and each --ssh-key file", () => {
    expect(
      cloudInitFromFlags(
        "user-data=ud.yaml,meta-data=md.yaml,network-config=net.yaml,root-ssh-key=root.pub,clouduser-ssh-key=user.pub",
        ["two.pub"],
        read,
      ),
    ).toEqual({
      userData: "#cloud-config\npackages: [htop]\n",
      metaData: "public-keys: []\n",
      networkConfig: "version: 2\n",
      sshAuthorizedKeys: [KEY, KEY, ROOT_KEY],
      rootSshAuthorizedKeys: [ROOT_KEY],
    });
    expect(cloudInitFromFlags(undefined, ["user.pub"], read)).toEqual({ sshAuthorizedKeys: [KEY] });
  });

  it("names the flag for an unknown option, a missing file or a key file with no key", () => {
    expect(validationError(() => cloudInitFromFlags("vendor-data=x", [], read)).issues[0]).toEqual({
      field: "--cloud-init",
      message:
        'unknown option "vendor-data" (allowed: user-data, meta-data, network-config, root-ssh-key, clouduser-ssh-key)',
    });
    expect(validationError(() => cloudInitFromFlags("user-data=nope", [], read)).field).toBe("--cloud-init user-data");
    expect(validationError(() => cloudInitFromFlags(undefined, ["nope.pub"], read)).field).toBe("--ssh-key");
    expect(validationError(() => cloudInitFromFlags(undefined, ["empty.pub"], read)).issues[0]).toEqual({
      field: "--ssh-key",
      message: "empty.pub holds no SSH public key",
    });
    expect(validationError(() => cloudInitFromFlags("", [], read)).field).toBe("--cloud-init");
  });

  it("leaves content checks to VmSpec, whose field maps back to the flag", () => {
    const bad = files({ "ud.sh": "echo no shebang\n", "k.pub": "not-a-key\n" });
    const base = { name: "ci-a", memory: "128", import: true, disk: ["size=1"] };
    const error = validationError(() =>
      parseOrThrow(VmSpec, specFromFlags({ ...base, cloudInit: "user-data=ud.sh" }, bad), "spec"),
    );
    expect(error.field).toBe("spec.cloudInit.userData");
    expect(flagForField(error.field as string)).toBe("--cloud-init user-data");
    const keyError = validationError(() =>
      parseOrThrow(VmSpec, specFromFlags({ ...base, sshKey: ["k.pub"] }, bad), "spec"),
    );
    expect(keyError.field).toBe("spec.cloudInit.sshAuthorizedKeys.0");
  });
});

describe("readTextFile", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "ci-flags-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a file, and names the flag when it is missing, a folder or huge", async () => {
    const file = path.join(dir, "k.pub");
    await writeFile(file, KEY);
    expect(readTextFile("--ssh-key", file)).toBe(KEY);
    expect(validationError(() => readTextFile("--ssh-key", path.join(dir, "none"))).issues[0]?.message).toMatch(
      /cannot read .*none \(ENOENT\)/,
    );
    expect(validationError(() => readTextFile("--ssh-key", dir)).issues[0]?.message).toMatch(/is not a file/);
    const huge = path.join(dir, "huge");
    await writeFile(huge, "x".repeat(300 * 1024));
    expect(validationError(() => readTextFile("--cloud-init user-data", huge)).field).toBe("--cloud-init user-data");
  });

  it("reads each file once through cachedReader", () => {
    let reads = 0;
    const read = cachedReader(() => {
      reads++;
      return KEY;
    });
    read("--ssh-key", "a");
    read("--ssh-key", "a");
    expect(reads).toBe(1);
  });
});
