import { createHash } from "node:crypto";
import { type CloudInitSpec, isCloudConfig } from "@virtfleet/core";
import { isMap, isSeq, parse, parseDocument, stringify, type YAMLMap, type YAMLSeq } from "yaml";

/** The files of a NoCloud seed, by their name on the `cidata` volume. */
export interface SeedDocuments {
  "user-data": string;
  "meta-data": string;
  /** Only when the spec gives a network-config. */
  "network-config"?: string;
}

/** Never fold long lines (a key line stays one line, as a person reading the seed expects). */
const YAML_OUT = { lineWidth: 0 } as const;

/** What virtfleet adds to user-data: the keys and the hostname of the spec. */
function additions(spec: CloudInitSpec): {
  keys: string[];
  rootKeys: string[];
  hostname: string | undefined;
} {
  return {
    keys: spec.sshAuthorizedKeys ?? [],
    rootKeys: spec.rootSshAuthorizedKeys ?? [],
    hostname: spec.hostname,
  };
}

/** The `#cloud-config` virtfleet writes when the spec gives no user-data (also the cloud-config part of a multipart). */
export function generatedCloudConfig(spec: CloudInitSpec): string {
  const { keys, rootKeys, hostname } = additions(spec);
  const config: Record<string, unknown> = {};
  if (hostname !== undefined) config.hostname = hostname;
  if (keys.length > 0) config.ssh_authorized_keys = keys;
  if (rootKeys.length > 0) {
    // "default" keeps the image's default user (who gets ssh_authorized_keys); root gets its own keys.
    config.users = ["default", { name: "root", ssh_authorized_keys: rootKeys }];
    config.disable_root = false;
  }
  return Object.keys(config).length === 0 ? "#cloud-config\n" : `#cloud-config\n${stringify(config, YAML_OUT)}`;
}

function appendUnique(seq: YAMLSeq, values: readonly string[]): void {
  const have = new Set(seq.items.map((i) => String((i as { value?: unknown }).value ?? i)));
  for (const v of values) if (!have.has(v)) seq.add(v);
}

/** Merges the spec's keys and hostname into a `#cloud-config` document, keeping its comments and order. */
function mergeCloudConfig(userData: string, spec: CloudInitSpec): string {
  const { keys, rootKeys, hostname } = additions(spec);
  const doc = parseDocument(userData);
  if (!isMap(doc.contents)) doc.contents = doc.createNode({}) as unknown as typeof doc.contents;
  const map = doc.contents as unknown as YAMLMap;
  if (hostname !== undefined) map.set("hostname", hostname);
  if (keys.length > 0) {
    const existing = map.get("ssh_authorized_keys");
    if (isSeq(existing)) appendUnique(existing, keys);
    else map.set("ssh_authorized_keys", doc.createNode(keys));
  }
  if (rootKeys.length > 0) {
    const users = map.get("users");
    if (!isSeq(users)) {
      map.set("users", doc.createNode(["default", { name: "root", ssh_authorized_keys: rootKeys }]));
    } else {
      const root = users.items.find((u) => isMap(u) && u.get("name") === "root") as YAMLMap | undefined;
      if (root === undefined) users.add(doc.createNode({ name: "root", ssh_authorized_keys: rootKeys }));
      else {
        const rk = root.get("ssh_authorized_keys");
        if (isSeq(rk)) appendUnique(rk, rootKeys);
        else root.set("ssh_authorized_keys", doc.createNode(rootKeys));
      }
    }
    if (!map.has("disable_root")) map.set("disable_root", false);
  }
  const body = doc.toString(YAML_OUT);
  // The header is a comment yaml keeps before the document; make sure it is the first line.
  return isCloudConfig(body) ? body : `#cloud-config\n${body}`;
}

/** A MIME multipart user-data (cloud-init runs each part): the generated cloud-config, then the caller's script. */
function multipart(cloudConfig: string, script: string): string {
  const boundary = `==virtfleet-${createHash("sha256").update(cloudConfig).update(script).digest("hex").slice(0, 32)}==`;
  const part = (type: string, body: string) =>
    `--${boundary}\nContent-Type: ${type}; charset="utf-8"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n\n${body}${body.endsWith("\n") ? "" : "\n"}`;
  return (
    `Content-Type: multipart/mixed; boundary="${boundary}"\nMIME-Version: 1.0\n\n` +
    part("text/cloud-config", cloudConfig) +
    part("text/x-shellscript", script) +
    `--${boundary}--\n`
  );
}

/**
 * The seed's user-data:
 * - no `userData`: a `#cloud-config` generated from `hostname` (`hostname:`), `sshAuthorizedKeys`
 *   (`ssh_authorized_keys:`, the image's default user) and `rootSshAuthorizedKeys` (`users: [default,
 *   {name: root, ssh_authorized_keys}]` and `disable_root: false`);
 * - a `#cloud-config` `userData`: that document with the same additions merged in: keys appended
 *   (without duplicates) to its `ssh_authorized_keys` and to root's entry in its `users` (added when
 *   missing), `hostname` set to the spec's, `disable_root: false` unless it says otherwise;
 * - a `#!` script `userData`: unchanged when there is nothing to add, else a MIME multipart of the
 *   generated cloud-config and the script.
 */
export function cloudInitUserData(spec: CloudInitSpec): string {
  const { keys, rootKeys, hostname } = additions(spec);
  const nothingToAdd = keys.length === 0 && rootKeys.length === 0 && hostname === undefined;
  if (spec.userData === undefined) return generatedCloudConfig(spec);
  if (nothingToAdd) return spec.userData;
  if (isCloudConfig(spec.userData)) return mergeCloudConfig(spec.userData, spec);
  return multipart(generatedCloudConfig(spec), spec.userData);
}

/**
 * The seed's meta-data: `instance-id` (unique per create: a new id makes cloud-init run its
 * once-per-instance modules again) and `local-hostname` (the VM's name), then the spec's own meta-data keys.
 */
export function cloudInitMetaData(spec: CloudInitSpec, instanceId: string, vmName: string): string {
  const extra = spec.metaData === undefined ? undefined : (parse(spec.metaData) as Record<string, unknown> | null);
  return stringify({ "instance-id": instanceId, "local-hostname": vmName, ...(extra ?? {}) }, YAML_OUT);
}

/** Every file of the seed. */
export function seedDocuments(spec: CloudInitSpec, instanceId: string, vmName: string): SeedDocuments {
  return {
    "user-data": cloudInitUserData(spec),
    "meta-data": cloudInitMetaData(spec, instanceId, vmName),
    ...(spec.networkConfig === undefined ? {} : { "network-config": spec.networkConfig }),
  };
}
