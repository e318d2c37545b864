import { parse as parseYaml } from "yaml";
import { z } from "zod";

/** The most bytes (UTF-8) of each cloud-init document a caller may give: user-data, meta-data, network-config. */
export const MAX_CLOUD_INIT_DOCUMENT_BYTES = 64 * 1024;
/** The most SSH public keys of each list (the default user's, root's). */
export const MAX_SSH_KEYS = 64;
/** The longest SSH public key line accepted (an RSA 16384-bit key is about 2.8 KB). */
export const MAX_SSH_KEY_LINE = 8192;

/** SSH public key types OpenSSH accepts in authorized_keys. */
export const SSH_KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ssh-dss",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;

function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** A YAML document's value, or the parser's message. */
function yamlValue(text: string): { value: unknown } | { error: string } {
  try {
    return { value: parseYaml(text, { maxAliasCount: 100 }) };
  } catch (error) {
    return { error: error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error) };
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const document = (what: string) =>
  z
    .string()
    .min(1, "must not be empty")
    .refine((s) => byteLength(s) <= MAX_CLOUD_INIT_DOCUMENT_BYTES, {
      message: `${what} must be at most ${MAX_CLOUD_INIT_DOCUMENT_BYTES} bytes (64 KiB)`,
    })
    .refine((s) => !s.includes("\0"), "must not contain NUL characters");

/** The first line of a `#cloud-config` document. */
const CLOUD_CONFIG_HEADER = /^#cloud-config[ \t]*\r?(\n|$)/;

/** Whether user-data is a `#cloud-config` document (else it is a `#!` script). */
export function isCloudConfig(userData: string): boolean {
  return CLOUD_CONFIG_HEADER.test(userData);
}

/**
 * cloud-init user-data: a `#cloud-config` YAML mapping or a `#!` script, at most 64 KiB. A
 * cloud-config's `ssh_authorized_keys` and `users`, where present, must be lists (keys are merged into them).
 */
export const UserData = document("user-data").superRefine((text, ctx) => {
  if (text.startsWith("#!")) return;
  if (!isCloudConfig(text)) {
    ctx.addIssue({ code: "custom", message: 'must start with a "#cloud-config" line or a "#!" script line' });
    return;
  }
  const parsed = yamlValue(text);
  if ("error" in parsed) {
    ctx.addIssue({ code: "custom", message: `is not valid YAML: ${parsed.error}` });
    return;
  }
  if (parsed.value === null || parsed.value === undefined) return;
  if (!isMapping(parsed.value)) {
    ctx.addIssue({ code: "custom", message: "a #cloud-config document must be a YAML mapping" });
    return;
  }
  for (const key of ["ssh_authorized_keys", "users"]) {
    const v = parsed.value[key];
    if (v !== undefined && v !== null && !Array.isArray(v)) {
      ctx.addIssue({ code: "custom", message: `its "${key}" must be a list` });
    }
  }
});

/** Keys of meta-data virtfleet sets itself. */
export const RESERVED_META_DATA_KEYS = ["instance-id", "local-hostname"] as const;

/** Extra NoCloud meta-data: a YAML mapping; `instance-id` and `local-hostname` are virtfleet's. */
export const MetaData = document("meta-data").superRefine((text, ctx) => {
  const parsed = yamlValue(text);
  if ("error" in parsed) {
    ctx.addIssue({ code: "custom", message: `is not valid YAML: ${parsed.error}` });
    return;
  }
  if (parsed.value === null || parsed.value === undefined) return;
  if (!isMapping(parsed.value)) {
    ctx.addIssue({ code: "custom", message: "must be a YAML mapping" });
    return;
  }
  for (const key of RESERVED_META_DATA_KEYS) {
    if (key in parsed.value) {
      ctx.addIssue({
        code: "custom",
        message: `must not set "${key}": virtfleet sets it (instance-id: the job id, local-hostname: the VM name)`,
      });
    }
  }
});

/** NoCloud network-config: a YAML mapping of network config version 1 or 2 (bare, or under `network:`). */
export const NetworkConfig = document("network-config").superRefine((text, ctx) => {
  const parsed = yamlValue(text);
  if ("error" in parsed) {
    ctx.addIssue({ code: "custom", message: `is not valid YAML: ${parsed.error}` });
    return;
  }
  const top = parsed.value;
  const body = isMapping(top) && isMapping(top.network) ? top.network : top;
  if (!isMapping(body) || (body.version !== 1 && body.version !== 2)) {
    ctx.addIssue({ code: "custom", message: 'must be a YAML mapping with "version: 1" or "version: 2"' });
  }
});

/** Whether `line` is `TYPE BASE64 [COMMENT]` whose key blob names the same type. */
function checkKeyLine(line: string): string | undefined {
  if ([...line].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))
    return "must be one line without control characters";
  const [type, blob] = line.split(" ", 3);
  if (type === undefined || !(SSH_KEY_TYPES as readonly string[]).includes(type)) {
    return `must start with an SSH key type (${SSH_KEY_TYPES.join(", ")}); authorized_keys options are not accepted`;
  }
  if (blob === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) {
    return "must have the key in base64 after its type";
  }
  const bytes = Uint8Array.from(atob(blob), (c) => c.charCodeAt(0));
  if (bytes.length < 4) return "the key is too short";
  const len = ((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0);
  const named = new TextDecoder().decode(bytes.subarray(4, 4 + len));
  if (len <= 0 || 4 + len > bytes.length || named !== type) {
    return `the key data is not a ${type} key`;
  }
  return undefined;
}

/** One OpenSSH public key line (`ssh-ed25519 AAAA… comment`), as in authorized_keys without options. */
export const SshPublicKey = z
  .string()
  .trim()
  .min(1, "must not be empty")
  .max(MAX_SSH_KEY_LINE, `must be at most ${MAX_SSH_KEY_LINE} characters`)
  .superRefine((line, ctx) => {
    const problem = checkKeyLine(line);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: `is not an OpenSSH public key: ${problem}` });
  });

/** A guest hostname: DNS labels separated by dots. */
export const GuestHostname = z
  .string()
  .min(1, "must not be empty")
  .max(253, "must be at most 253 characters")
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
    "must be DNS labels (letters, digits, '-') separated by dots",
  );

const keyList = z.array(SshPublicKey).max(MAX_SSH_KEYS, `at most ${MAX_SSH_KEYS} keys`);

/**
 * cloud-init NoCloud data for a VM (virt-install's `--cloud-init`). The worker writes it to a
 * `cidata` seed ISO in the VM's folder. How the parts combine is `cloudInitUserData`'s doc
 * (`@virtfleet/cloud-init`).
 */
export const CloudInitSpec = z
  .object({
    /** user-data: `#cloud-config` YAML or a `#!` script, ≤ 64 KiB. Omitted: generated from the fields below. */
    userData: UserData.optional(),
    /** Extra meta-data (YAML mapping, ≤ 64 KiB); `instance-id` and `local-hostname` are set by virtfleet. */
    metaData: MetaData.optional(),
    /** network-config (v1 or v2 YAML, ≤ 64 KiB). */
    networkConfig: NetworkConfig.optional(),
    /** Keys for the image's default user (virt-install's `clouduser-ssh-key`; the CLI's `--ssh-key`). */
    sshAuthorizedKeys: keyList.optional(),
    /** Keys for root (virt-install's `root-ssh-key`); root may then log in with them. */
    rootSshAuthorizedKeys: keyList.optional(),
    /** The guest's hostname. Omitted: the VM's name (meta-data `local-hostname`). */
    hostname: GuestHostname.optional(),
  })
  .strict();
export type CloudInitSpec = z.infer<typeof CloudInitSpec>;
