import { readFileSync, statSync } from "node:fs";
import { type CloudInitSpec, MAX_CLOUD_INIT_DOCUMENT_BYTES, ValidationError } from "@virtfleet/core";
import { parseSubOptions } from "./flags.js";

/** Reads a file the user named in `flag`; a problem is a ValidationError naming the flag. */
export type ReadTextFile = (flag: string, path: string) => string;

/** The largest file a cloud-init flag reads (the spec then applies its own, smaller limits). */
const MAX_FLAG_FILE_BYTES = 4 * MAX_CLOUD_INIT_DOCUMENT_BYTES;

function bad(flag: string, message: string): never {
  throw new ValidationError([{ field: flag, message }]);
}

/** Reads a text file for a flag: it must exist, be a regular file and not be huge. */
export const readTextFile: ReadTextFile = (flag, path) => {
  try {
    const info = statSync(path);
    if (!info.isFile()) bad(flag, `${path} is not a file`);
    if (info.size > MAX_FLAG_FILE_BYTES) bad(flag, `${path} is larger than ${MAX_FLAG_FILE_BYTES} bytes`);
    return readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof ValidationError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    return bad(flag, `cannot read ${path}${code === undefined ? "" : ` (${code})`}`);
  }
};

/** A reader that reads each file once (`--count` builds many specs from the same files). */
export function cachedReader(read: ReadTextFile = readTextFile): ReadTextFile {
  const seen = new Map<string, string>();
  return (flag, path) => {
    const key = `${flag}\0${path}`;
    let text = seen.get(key);
    if (text === undefined) {
      text = read(flag, path);
      seen.set(key, text);
    }
    return text;
  };
}

/** The key lines of an authorized_keys-style file: blank lines and `#` comments are skipped. */
export function keyLines(flag: string, path: string, text: string): string[] {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (lines.length === 0) bad(flag, `${path} holds no SSH public key`);
  return lines;
}

const SUB_OPTIONS = ["user-data", "meta-data", "network-config", "root-ssh-key", "clouduser-ssh-key"] as const;

/**
 * `--cloud-init user-data=FILE,meta-data=FILE,network-config=FILE,root-ssh-key=FILE,clouduser-ssh-key=FILE`
 * (virt-install 4's sub-options) and `--ssh-key FILE` (repeatable; the default user's keys, like
 * `clouduser-ssh-key`) into a spec's `cloudInit`, the files' text read in. Undefined when neither is given.
 */
export function cloudInitFromFlags(
  raw: string | undefined,
  sshKeyFiles: readonly string[],
  read: ReadTextFile,
): CloudInitSpec | undefined {
  if (raw === undefined && sshKeyFiles.length === 0) return undefined;
  const o = raw === undefined ? new Map<string, string>() : parseSubOptions("--cloud-init", raw);
  for (const key of o.keys()) {
    if (!(SUB_OPTIONS as readonly string[]).includes(key)) {
      bad("--cloud-init", `unknown option "${key}" (allowed: ${SUB_OPTIONS.join(", ")})`);
    }
  }
  if (raw !== undefined && o.size === 0) bad("--cloud-init", `give at least one of ${SUB_OPTIONS.join(", ")}`);
  const file = (key: (typeof SUB_OPTIONS)[number]) => {
    const path = o.get(key);
    if (path === undefined) return undefined;
    if (path === "") bad("--cloud-init", `${key}= needs a file`);
    return { path, text: read(`--cloud-init ${key}`, path) };
  };
  const userData = file("user-data");
  const metaData = file("meta-data");
  const networkConfig = file("network-config");
  const root = file("root-ssh-key");
  const clouduser = file("clouduser-ssh-key");
  const keys = [
    ...(clouduser === undefined ? [] : keyLines("--cloud-init clouduser-ssh-key", clouduser.path, clouduser.text)),
    ...sshKeyFiles.flatMap((path) => keyLines("--ssh-key", path, read("--ssh-key", path))),
  ];
  return {
    ...(userData === undefined ? {} : { userData: userData.text }),
    ...(metaData === undefined ? {} : { metaData: metaData.text }),
    ...(networkConfig === undefined ? {} : { networkConfig: networkConfig.text }),
    ...(keys.length === 0 ? {} : { sshAuthorizedKeys: keys }),
    ...(root === undefined
      ? {}
      : { rootSshAuthorizedKeys: keyLines("--cloud-init root-ssh-key", root.path, root.text) }),
  };
}
