/** argv builders for `virsh`. Every call names its libvirt URI. */
export const virsh = {
  domstate: (uri: string, name: string) => ["-c", uri, "domstate", name],
  /** `domstate --reason`: "shut off (destroyed)", "crashed (panicked)", … */
  domstateReason: (uri: string, name: string) => ["-c", uri, "domstate", name, "--reason"],
  /** One QMP command to the guest agent; virsh gives up after `timeoutSec`. */
  qemuAgentCommand: (uri: string, name: string, command: AgentCommand, timeoutSec = 5) => [
    "-c",
    uri,
    "qemu-agent-command",
    name,
    JSON.stringify(command),
    "--timeout",
    String(timeoutSec),
  ],
  /** The guest's addresses, as its agent (`agent`) or libvirt's DHCP (`lease`) knows them. */
  domifaddr: (uri: string, name: string, source: "agent" | "lease") => [
    "-c",
    uri,
    "domifaddr",
    name,
    "--source",
    source,
    "--full",
  ],
  dumpxml: (uri: string, name: string) => ["-c", uri, "dumpxml", name],
  listAll: (uri: string) => ["-c", uri, "list", "--all", "--name"],
  start: (uri: string, name: string) => ["-c", uri, "start", name],
  destroy: (uri: string, name: string) => ["-c", uri, "destroy", name],
  /** Pauses the domain's vCPUs (it keeps its memory; costs no CPU while paused). */
  suspend: (uri: string, name: string) => ["-c", uri, "suspend", name],
  /** Runs a paused domain again. */
  resume: (uri: string, name: string) => ["-c", uri, "resume", name],
  undefine: (uri: string, name: string) => ["-c", uri, "undefine", name, "--nvram"],
  metadataGet: (uri: string, name: string, ns: string) => ["-c", uri, "metadata", name, ns],
  nodeinfo: (uri: string) => ["-c", uri, "nodeinfo"],
  version: (uri: string) => ["-c", uri, "version"],
} as const;

/** A guest agent (QMP) command, e.g. `{ execute: "guest-ping" }`. */
export interface AgentCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** Guest agent commands virtfleet sends. */
export const agentCommands = {
  ping: (): AgentCommand => ({ execute: "guest-ping" }),
  /** Runs `path args…` in the guest, capturing its output; the reply names its pid. */
  exec: (path: string, args: readonly string[]): AgentCommand => ({
    execute: "guest-exec",
    arguments: { path, arg: [...args], "capture-output": true },
  }),
  execStatus: (pid: number): AgentCommand => ({ execute: "guest-exec-status", arguments: { pid } }),
  /**
   * Sets the guest's clock. Without a time the guest reads its RTC, which QEMU keeps on the host's
   * time: right after a resume from a long pause (the guest's own clock stood still meanwhile).
   */
  setTime: (): AgentCommand => ({ execute: "guest-set-time" }),
};

/** libvirt's domain states, as `virsh domstate` prints them. */
export type DomainState =
  | "running"
  | "idle"
  | "paused"
  | "in shutdown"
  | "shut off"
  | "crashed"
  | "pmsuspended"
  | "unknown";

export function parseDomState(stdout: string): DomainState {
  const s = stdout.trim().split("\n")[0]?.trim() ?? "";
  const known: DomainState[] = ["running", "idle", "paused", "in shutdown", "shut off", "crashed", "pmsuspended"];
  return (known as string[]).includes(s) ? (s as DomainState) : "unknown";
}

/** True when virsh's stderr says the domain does not exist. */
export function isNoDomainError(stderr: string): boolean {
  return /failed to get domain|Domain not found|no domain with matching name/i.test(stderr);
}

/** Parses `virsh nodeinfo`: CPUs and memory of the host. */
export function parseNodeinfo(stdout: string): { cpus: number; memoryMiB: number } {
  const cpus = Number(/^CPU\(s\):\s+(\d+)/m.exec(stdout)?.[1] ?? Number.NaN);
  const memKiB = Number(/^Memory size:\s+(\d+)\s+KiB/m.exec(stdout)?.[1] ?? Number.NaN);
  return { cpus, memoryMiB: Math.floor(memKiB / 1024) };
}

/** `virsh domstate --reason`: the state and why, e.g. `{ state: "shut off", reason: "destroyed" }`. */
export function parseDomStateReason(stdout: string): { state: DomainState; reason: string } {
  const line = stdout.trim().split("\n")[0]?.trim() ?? "";
  const m = /^(.*?)\s*\(([^)]*)\)$/.exec(line);
  return m === null
    ? { state: parseDomState(line), reason: "unknown" }
    : { state: parseDomState(m[1] ?? ""), reason: m[2] ?? "unknown" };
}

/** True when virsh's stderr says the guest agent is not (yet) there to answer. */
export function isAgentNotReadyError(stderr: string): boolean {
  return /guest agent is not (connected|responding|available)|agent is not connected|agent not available|Guest agent not available/i.test(
    stderr,
  );
}

/** True when the domain has no guest agent channel at all (e.g. a tiny guest made without one). */
export function isAgentNotConfiguredError(stderr: string): boolean {
  return /guest agent is not configured|agent is not configured/i.test(stderr);
}

/**
 * The `return` of a guest agent reply (`{"return": …}`); an `{"error": {class, desc}}` reply or
 * anything that is not JSON throws, naming what came back.
 */
export function parseAgentReply(stdout: string): unknown {
  let reply: unknown;
  try {
    reply = JSON.parse(stdout);
  } catch {
    throw new Error(`guest agent reply is not JSON: ${stdout.trim().slice(0, 200)}`);
  }
  if (typeof reply !== "object" || reply === null) throw new Error(`unexpected guest agent reply: ${stdout.trim()}`);
  if ("error" in reply) {
    const e = (reply as { error?: { class?: string; desc?: string } }).error;
    throw new Error(`guest agent error: ${e?.class ?? "?"}: ${e?.desc ?? "?"}`);
  }
  if (!("return" in reply)) throw new Error(`unexpected guest agent reply: ${stdout.trim().slice(0, 200)}`);
  return (reply as { return: unknown }).return;
}

/** The pid a `guest-exec` reply names. */
export function parseGuestExecReply(stdout: string): number {
  const r = parseAgentReply(stdout) as { pid?: unknown } | null;
  if (typeof r?.pid !== "number") throw new Error(`guest-exec reply has no pid: ${stdout.trim()}`);
  return r.pid;
}

/** A `guest-exec-status` reply, its output decoded from base64. */
export type GuestExecStatus =
  | { exited: false }
  | { exited: true; exitCode: number | undefined; signal: number | undefined; stdout: string; stderr: string };

export function parseGuestExecStatus(stdout: string): GuestExecStatus {
  const r = parseAgentReply(stdout) as Record<string, unknown> | null;
  if (r === null || typeof r !== "object" || typeof r.exited !== "boolean")
    throw new Error(`unexpected guest-exec-status reply: ${stdout.trim().slice(0, 200)}`);
  if (!r.exited) return { exited: false };
  const text = (v: unknown) => (typeof v === "string" ? Buffer.from(v, "base64").toString("utf8") : "");
  return {
    exited: true,
    exitCode: typeof r.exitcode === "number" ? r.exitcode : undefined,
    signal: typeof r.signal === "number" ? r.signal : undefined,
    stdout: text(r["out-data"]),
    stderr: text(r["err-data"]),
  };
}

/** One address row of `virsh domifaddr --full`. */
export interface InterfaceAddress {
  name: string;
  mac: string;
  protocol: "ipv4" | "ipv6";
  /** With its prefix length: `192.0.2.10/24`. */
  address: string;
}

/** Parses `virsh domifaddr [--full]` (rows after the dashed line; `-` repeats the row above's name and MAC). */
export function parseDomifaddr(stdout: string): InterfaceAddress[] {
  const lines = stdout.split("\n");
  const start = lines.findIndex((l) => /^-{5,}/.test(l.trim()));
  const out: InterfaceAddress[] = [];
  let name = "";
  let mac = "";
  for (const line of lines.slice(start + 1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 4) continue;
    const [n, m, protocol, address] = cols as [string, string, string, string];
    if (protocol !== "ipv4" && protocol !== "ipv6") continue;
    if (n !== "-") name = n;
    if (m !== "-") mac = m;
    out.push({ name, mac, protocol, address });
  }
  return out;
}

/** True for addresses nobody outside the guest can use: loopback, link-local, unspecified. */
export function isLocalAddress(a: InterfaceAddress): boolean {
  const ip = a.address.split("/")[0]?.toLowerCase() ?? "";
  if (a.protocol === "ipv4") return ip.startsWith("127.") || ip.startsWith("169.254.") || ip === "0.0.0.0";
  return ip === "::1" || ip === "::" || /^fe[89ab]/.test(ip);
}

/** The addresses worth reporting: no loopback, no link-local; IPv4 first. */
export function usableAddresses(rows: readonly InterfaceAddress[]): InterfaceAddress[] {
  const usable = rows.filter((a) => !isLocalAddress(a) && a.name !== "lo");
  return [...usable.filter((a) => a.protocol === "ipv4"), ...usable.filter((a) => a.protocol === "ipv6")];
}
