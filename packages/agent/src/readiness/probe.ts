import type { RunOptions } from "@virtfleet/hypervisor";
import type { Libvirt } from "../libvirt.js";

/** What a strategy may ask of libvirt. */
export type ReadinessLibvirt = Pick<Libvirt, "stateReason" | "agentCommand" | "interfaceAddresses">;

/** What every probe of one wait shares. */
export interface ReadyContext {
  /** The domain's name. */
  name: string;
  libvirt: ReadinessLibvirt;
  /** The VM's serial console file. */
  consolePath: string;
  /** Options for each virsh call (its timeout, the job's signal). */
  run: RunOptions;
}

/** One look at the guest: ready (with what showed it), or where it is stuck. */
export type Probe = { ready: true; message: string; addresses?: string[] } | { ready: false; stuck: string };

/**
 * One way of deciding a guest is ready. `probe` never waits long (each agent call is bounded); it
 * throws a VirtfleetError only when the guest can never become ready (e.g. cloud-init failed).
 */
export interface ReadinessStrategy {
  /** How long to sleep between probes. */
  pollMs: number;
  probe(ctx: ReadyContext): Promise<Probe>;
}

/** How long virsh waits for one guest agent answer. */
export const AGENT_TIMEOUT_SEC = 5;
