/** argv builders for `virsh`. Every call names its libvirt URI. */
export const virsh = {
  domstate: (uri: string, name: string) => ["-c", uri, "domstate", name],
  dumpxml: (uri: string, name: string) => ["-c", uri, "dumpxml", name],
  listAll: (uri: string) => ["-c", uri, "list", "--all", "--name"],
  start: (uri: string, name: string) => ["-c", uri, "start", name],
  destroy: (uri: string, name: string) => ["-c", uri, "destroy", name],
  undefine: (uri: string, name: string) => ["-c", uri, "undefine", name, "--nvram"],
  metadataGet: (uri: string, name: string, ns: string) => ["-c", uri, "metadata", name, ns],
  nodeinfo: (uri: string) => ["-c", uri, "nodeinfo"],
  version: (uri: string) => ["-c", uri, "version"],
} as const;

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
