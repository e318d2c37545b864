import { VirtfleetError } from "@virtfleet/core";
import {
  type AgentCommand,
  agentCommands,
  type CommandRunner,
  type DomainState,
  type InterfaceAddress,
  isAgentNotConfiguredError,
  isAgentNotReadyError,
  isNoDomainError,
  parseDomifaddr,
  parseDomState,
  parseDomStateReason,
  parseNodeinfo,
  type RunOptions,
  virsh,
} from "@virtfleet/hypervisor";

/** The XML namespace of virtfleet's domain metadata: a domain without it is not virtfleet's. */
export const METADATA_NS = "https://virtfleet.dev/xmlns/vm/1";

/** What virtfleet writes into each domain it makes. */
export interface Ownership {
  fingerprint: string;
  jobId: string;
  hostId: string;
  /**
   * The fleet's identity (`<prefix>:fleet` in Redis). Absent in metadata written by older versions:
   * such a domain is never removed without an operator's word.
   */
  fleetId?: string;
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function unescapeAttr(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");
}

/**
 * virt-install `--xml` edits that write the ownership element in the same define, so a domain never
 * exists without it. Values are plain tokens (hex, ids), which virt-install's XPath setter keeps as is.
 */
export function ownershipXmlEdits(o: Ownership): string[] {
  return [
    `./metadata/vm/@xmlns=${METADATA_NS}`,
    `./metadata/vm/@fingerprint=${o.fingerprint}`,
    `./metadata/vm/@job=${o.jobId}`,
    `./metadata/vm/@host=${o.hostId}`,
    ...(o.fleetId === undefined ? [] : [`./metadata/vm/@fleet=${o.fleetId}`]),
  ];
}

export function ownershipXml(o: Ownership): string {
  return `<vm fingerprint="${escapeAttr(o.fingerprint)}" job="${escapeAttr(o.jobId)}" host="${escapeAttr(o.hostId)}"${o.fleetId === undefined ? "" : ` fleet="${escapeAttr(o.fleetId)}"`}/>`;
}

export function parseOwnershipXml(xml: string): Ownership | undefined {
  const attr = (name: string) => {
    const m = new RegExp(`(?:^|\\s)${name}="([^"]*)"`).exec(xml);
    return m?.[1] === undefined ? undefined : unescapeAttr(m[1]);
  };
  const fingerprint = attr("fingerprint");
  const jobId = attr("job");
  const hostId = attr("host");
  const fleetId = attr("fleet");
  if (fingerprint === undefined || jobId === undefined || hostId === undefined) return undefined;
  return { fingerprint, jobId, hostId, ...(fleetId === undefined || fleetId === "" ? {} : { fleetId }) };
}

/** A libvirt host, through `virsh` (and `virt-install`), one argv at a time. */
export class Libvirt {
  readonly uri: string;
  readonly #runner: CommandRunner;

  constructor(runner: CommandRunner, uri: string) {
    this.#runner = runner;
    this.uri = uri;
  }

  /** The domain's state, or undefined when there is no such domain. */
  async state(name: string, options?: RunOptions): Promise<DomainState | undefined> {
    try {
      const { stdout } = await this.#runner.run("virsh", virsh.domstate(this.uri, name), options);
      return parseDomState(stdout);
    } catch (error) {
      if (error instanceof VirtfleetError && isNoDomainError(error.stderr ?? "")) return undefined;
      throw error;
    }
  }

  /** The domain's state and libvirt's reason for it, or undefined when there is no such domain. */
  async stateReason(name: string, options?: RunOptions): Promise<{ state: DomainState; reason: string } | undefined> {
    try {
      const { stdout } = await this.#runner.run("virsh", virsh.domstateReason(this.uri, name), options);
      return parseDomStateReason(stdout);
    } catch (error) {
      if (error instanceof VirtfleetError && isNoDomainError(error.stderr ?? "")) return undefined;
      throw error;
    }
  }

  /** Sends one command to the domain's qemu-guest-agent; its raw JSON reply (virsh's failure throws). */
  async agentCommand(
    name: string,
    command: AgentCommand,
    agentTimeoutSec: number,
    options?: RunOptions,
  ): Promise<string> {
    const argv = virsh.qemuAgentCommand(this.uri, name, command, agentTimeoutSec);
    const { stdout } = await this.#runner.run("virsh", argv, options);
    return stdout;
  }

  /** The guest's addresses as its agent or libvirt's DHCP leases know them (virsh's failure throws). */
  async interfaceAddresses(name: string, source: "agent" | "lease", options?: RunOptions): Promise<InterfaceAddress[]> {
    const { stdout } = await this.#runner.run("virsh", virsh.domifaddr(this.uri, name, source), options);
    return parseDomifaddr(stdout);
  }

  /** virtfleet's metadata on the domain, or undefined when the domain is not virtfleet's (or is gone). */
  async ownership(name: string, options?: RunOptions): Promise<Ownership | undefined> {
    try {
      const { stdout } = await this.#runner.run("virsh", virsh.metadataGet(this.uri, name, METADATA_NS), options);
      return parseOwnershipXml(stdout);
    } catch (error) {
      if (
        error instanceof VirtfleetError &&
        /metadata not found|No metadata|failed to get domain|Domain not found/i.test(error.stderr ?? "")
      ) {
        return undefined;
      }
      throw error;
    }
  }

  async start(name: string, options?: RunOptions): Promise<void> {
    await this.#runner.run("virsh", virsh.start(this.uri, name), options);
  }

  /** Stops the domain hard; a domain that is not running is fine. */
  async stop(name: string, options?: RunOptions): Promise<void> {
    try {
      await this.#runner.run("virsh", virsh.destroy(this.uri, name), options);
    } catch (error) {
      if (error instanceof VirtfleetError && /domain is not running|not running/i.test(error.stderr ?? "")) return;
      if (error instanceof VirtfleetError && isNoDomainError(error.stderr ?? "")) return;
      throw error;
    }
  }

  /** Pauses the domain (its vCPUs stop; memory is kept). */
  async suspend(name: string, options?: RunOptions): Promise<void> {
    await this.#runner.run("virsh", virsh.suspend(this.uri, name), options);
  }

  /** Runs a paused domain again: true when it was paused, false when it was already running. */
  async resume(name: string, options?: RunOptions): Promise<boolean> {
    try {
      await this.#runner.run("virsh", virsh.resume(this.uri, name), options);
      return true;
    } catch (error) {
      if (error instanceof VirtfleetError && /domain is already running/i.test(error.stderr ?? "")) return false;
      throw error;
    }
  }

  /**
   * Sets the guest's clock from its RTC through the guest agent (`guest-set-time`). False when the
   * guest has no agent (no channel, or nothing answering on it); other failures throw.
   */
  async setGuestTime(name: string, agentTimeoutSec = 2, options?: RunOptions): Promise<boolean> {
    try {
      await this.agentCommand(name, agentCommands.setTime(), agentTimeoutSec, options);
      return true;
    } catch (error) {
      const stderr = error instanceof VirtfleetError ? (error.stderr ?? "") : "";
      if (isAgentNotConfiguredError(stderr) || isAgentNotReadyError(stderr)) return false;
      if (error instanceof VirtfleetError && error.code === "COMMAND_TIMEOUT") return false;
      throw error;
    }
  }

  /** Undefines the domain; one that is gone is fine. */
  async undefine(name: string, options?: RunOptions): Promise<void> {
    try {
      await this.#runner.run("virsh", virsh.undefine(this.uri, name), options);
    } catch (error) {
      if (error instanceof VirtfleetError && isNoDomainError(error.stderr ?? "")) return;
      throw error;
    }
  }

  async listDomains(options?: RunOptions): Promise<string[]> {
    const { stdout } = await this.#runner.run("virsh", virsh.listAll(this.uri), options);
    return stdout
      .split("\n")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  }

  async nodeinfo(options?: RunOptions): Promise<{ cpus: number; memoryMiB: number }> {
    const { stdout } = await this.#runner.run("virsh", virsh.nodeinfo(this.uri), options);
    return parseNodeinfo(stdout);
  }

  async virtInstall(args: readonly string[], options?: RunOptions): Promise<void> {
    await this.#runner.run("virt-install", args, options);
  }
}
