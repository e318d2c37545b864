import { ValidationError, type VmSpecInput } from "@virtfleet/core";
import { cloudInitFromFlags, type ReadTextFile, readTextFile } from "./cloud-init-flags.js";

/** A flag that could not be read: names the flag. */
function bad(flag: string, message: string): never {
  throw new ValidationError([{ field: flag, message }]);
}

/**
 * Splits a virt-install style `key=value,key=value` option. Values may be double-quoted to hold commas;
 * `restKey`, when unquoted, takes the rest of the string (so `kernel_args=a=1,b` stays whole).
 */
export function parseSubOptions(flag: string, input: string, restKey?: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < input.length) {
    const eq = input.indexOf("=", i);
    const comma = input.indexOf(",", i);
    if (eq === -1 || (comma !== -1 && comma < eq)) {
      const token = input.slice(i, comma === -1 ? undefined : comma);
      bad(flag, `"${token}" is not key=value`);
    }
    const key = input.slice(i, eq).trim();
    if (key === "") bad(flag, "empty key");
    let value: string;
    let next: number;
    if (input[eq + 1] === '"') {
      const close = input.indexOf('"', eq + 2);
      if (close === -1) bad(flag, `unclosed quote in ${key}=`);
      value = input.slice(eq + 2, close);
      next = close + 1;
      if (next < input.length && input[next] !== ",") bad(flag, `expected ',' after ${key}="…"`);
      next += 1;
    } else if (key === restKey) {
      value = input.slice(eq + 1);
      next = input.length;
    } else {
      const end = input.indexOf(",", eq + 1);
      value = input.slice(eq + 1, end === -1 ? undefined : end);
      next = end === -1 ? input.length : end + 1;
    }
    if (out.has(key)) bad(flag, `${key} given twice`);
    out.set(key, value);
    i = next;
  }
  return out;
}

function only(flag: string, options: Map<string, string>, allowed: readonly string[]): void {
  for (const key of options.keys()) {
    if (!allowed.includes(key)) bad(flag, `unknown option "${key}" (allowed: ${allowed.join(", ")})`);
  }
}

function number(flag: string, raw: string | undefined, what: string): number {
  if (raw === undefined || raw.trim() === "" || !/^\d+(\.\d+)?$/.test(raw.trim()))
    bad(flag, `${what} must be a number, got "${raw ?? ""}"`);
  return Number(raw);
}

/** `--disk size=20[,format=raw|qcow2][,backing=IMAGE]` */
export function parseDisk(raw: string): NonNullable<VmSpecInput["disks"]>[number] {
  const o = parseSubOptions("--disk", raw);
  only("--disk", o, ["size", "format", "backing"]);
  const backing = o.get("backing");
  if (!o.has("size")) bad("--disk", "size=GiB is required");
  return {
    sizeGiB: number("--disk", o.get("size"), "size"),
    ...(o.has("format")
      ? { format: o.get("format") as "raw" }
      : backing !== undefined
        ? { format: "qcow2" as const }
        : {}),
    ...(backing === undefined ? {} : { backing }),
  };
}

/** `--network none | bridge=BR[,model=M][,mac=MAC] | network=NAME[,model=M][,mac=MAC]`; `none` gives no entry. */
export function parseNetwork(raw: string): NonNullable<VmSpecInput["networks"]>[number] | undefined {
  if (raw === "none") return undefined;
  const o = parseSubOptions("--network", raw);
  only("--network", o, ["bridge", "network", "model", "mac"]);
  const model = o.get("model") as "virtio" | undefined;
  const mac = o.get("mac");
  const bridge = o.get("bridge");
  const network = o.get("network");
  if ((bridge === undefined) === (network === undefined))
    bad("--network", "give exactly one of bridge=BR, network=NAME, or none");
  const rest = { ...(model === undefined ? {} : { model }), ...(mac === undefined ? {} : { mac }) };
  if (bridge !== undefined) return { type: "bridge", bridge, ...rest };
  return { type: "network", network: network as string, ...rest };
}

/** `--boot kernel=IMAGE[,initrd=IMAGE][,kernel_args=…]` */
export function parseBoot(raw: string): VmSpecInput["install"] {
  const o = parseSubOptions("--boot", raw, "kernel_args");
  only("--boot", o, ["kernel", "initrd", "kernel_args"]);
  const kernel = o.get("kernel");
  if (kernel === undefined) bad("--boot", "kernel=IMAGE is required");
  const initrd = o.get("initrd");
  const kernelArgs = o.get("kernel_args");
  return {
    method: "kernel",
    kernel,
    ...(initrd === undefined ? {} : { initrd }),
    ...(kernelArgs === undefined ? {} : { kernelArgs }),
  };
}

/** `key=value` (repeatable flag) into a record. */
export function parseLabel(flag: string, raw: string, into: Record<string, string> = {}): Record<string, string> {
  const eq = raw.indexOf("=");
  if (eq <= 0) bad(flag, `"${raw}" is not key=value`);
  into[raw.slice(0, eq)] = raw.slice(eq + 1);
  return into;
}

export interface CreateFlags {
  name?: string;
  memory?: string;
  ram?: string;
  vcpus?: string;
  disk?: string[];
  cdrom?: string;
  import?: boolean;
  boot?: string;
  osVariant?: string;
  network?: string[];
  virtType?: string;
  vmLabel?: string[];
  /** `--cloud-init user-data=FILE,meta-data=FILE,network-config=FILE,root-ssh-key=FILE,clouduser-ssh-key=FILE` */
  cloudInit?: string;
  /** `--ssh-key FILE` (repeatable): keys for the image's default user. */
  sshKey?: string[];
}

function integer(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^-?\d+$/.test(raw.trim())) bad(flag, `must be a whole number, got "${raw}"`);
  return Number(raw);
}

/** virt-install style flags into a VM spec input (validated afterwards by the VmSpec schema). */
export function specFromFlags(f: CreateFlags, read: ReadTextFile = readTextFile): VmSpecInput {
  if (f.name === undefined) bad("--name", "is required");
  if (f.memory !== undefined && f.ram !== undefined) bad("--memory", "give --memory or --ram, not both");
  const memory = integer(f.memory === undefined ? "--ram" : "--memory", f.memory ?? f.ram);
  if (memory === undefined) bad("--memory", "is required (MiB)");
  const methods = [f.cdrom !== undefined, f.import === true, f.boot !== undefined].filter(Boolean).length;
  if (methods > 1) bad(f.boot !== undefined ? "--boot" : "--import", "give only one of --cdrom, --import or --boot");
  let install: VmSpecInput["install"] = { method: "import" };
  if (f.cdrom !== undefined) install = { method: "cdrom", image: f.cdrom };
  else if (f.boot !== undefined) install = parseBoot(f.boot);
  else if (methods === 0 && f.import !== true)
    bad("--import", "give one of --cdrom IMAGE, --import or --boot kernel=IMAGE");
  const networks = (f.network ?? []).map(parseNetwork);
  if (networks.includes(undefined) && networks.length > 1)
    bad("--network", "none cannot be combined with other networks");
  const labels: Record<string, string> = {};
  for (const l of f.vmLabel ?? []) parseLabel("--vm-label", l, labels);
  const cloudInit = cloudInitFromFlags(f.cloudInit, f.sshKey ?? [], read);
  return {
    name: f.name,
    memoryMiB: memory,
    vcpus: integer("--vcpus", f.vcpus) ?? 1,
    disks: (f.disk ?? []).map(parseDisk),
    install,
    ...(f.osVariant === undefined ? {} : { osVariant: f.osVariant }),
    networks: networks.filter((n): n is NonNullable<typeof n> => n !== undefined),
    ...(f.virtType === undefined ? {} : { virtType: f.virtType as "kvm" }),
    labels,
    ...(cloudInit === undefined ? {} : { cloudInit }),
  };
}

/** The CLI flag for a spec field, so errors name what the user typed. */
export function flagForField(field: string): string {
  const path = field.replace(/^spec\./, "");
  const head = path.split(".")[0] ?? path;
  const map: Record<string, string> = {
    name: "--name",
    memoryMiB: "--memory",
    vcpus: "--vcpus",
    disks: "--disk",
    install: path.startsWith("install.image") ? "--cdrom" : "--boot",
    osVariant: "--os-variant",
    networks: "--network",
    virtType: "--virt-type",
    labels: "--vm-label",
    host: "--host",
    cloudInit: cloudInitFlag(path),
    url: "--url",
    sha256: "--sha256",
    file: "--file",
  };
  return Object.hasOwn(map, head) ? (map[head] as string) : field;
}

function cloudInitFlag(path: string): string {
  const field = path.split(".")[1];
  const sub: Record<string, string> = {
    userData: "--cloud-init user-data",
    metaData: "--cloud-init meta-data",
    networkConfig: "--cloud-init network-config",
    rootSshAuthorizedKeys: "--cloud-init root-ssh-key",
    sshAuthorizedKeys: "--ssh-key",
  };
  return field !== undefined && Object.hasOwn(sub, field) ? (sub[field] as string) : "--cloud-init";
}

/** Expands `lab-{n}` for `--count`: lab-1 … lab-N. Without `{n}`, appends `-N`. */
export function expandNames(pattern: string, count: number): string[] {
  const names: string[] = [];
  for (let n = 1; n <= count; n++)
    names.push(pattern.includes("{n}") ? pattern.replaceAll("{n}", String(n)) : `${pattern}-${n}`);
  return names;
}
