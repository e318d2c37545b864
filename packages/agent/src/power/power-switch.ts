import { type PowerRequest, type PowerResult, toErrorInfo, VirtfleetError } from "@virtfleet/core";
import type { Logger } from "pino";
import type { Libvirt } from "../libvirt.js";

export interface PowerSwitchOptions {
  libvirt: Libvirt;
  hostId: string;
  /** The fleet's identity: only domains whose metadata names this fleet and host are touched. */
  fleetId: string;
  logger: Logger;
  /** How long the guest agent may take to set the clock after a resume (s). Default 2. */
  agentTimeoutSec?: number;
}

/**
 * Pauses and resumes the fleet's VMs on this host (what a warm pool does to its ready VMs). Only a
 * domain whose virtfleet metadata names this fleet and this host is touched: another fleet's domain,
 * or one virtfleet did not make, is refused like a missing one. Idempotent: suspending a paused
 * domain or resuming a running one does nothing and answers its state.
 */
export class PowerSwitch {
  readonly #o: PowerSwitchOptions;

  constructor(options: PowerSwitchOptions) {
    this.#o = options;
  }

  /** Does what the request asks; a failure is answered (with its code), never thrown. */
  async apply(request: PowerRequest): Promise<PowerResult> {
    const log = this.#o.logger.child({ vm: request.vm, power: request.action });
    try {
      const result = await this.#apply(request);
      log.info({ state: result.state, clockSet: result.clockSet }, `power ${request.action}`);
      return result;
    } catch (error) {
      const info = toErrorInfo(error);
      log.warn({ code: info.code, err: error }, `power ${request.action} failed`);
      return { error: { code: info.code, message: info.message } };
    }
  }

  async #apply({ vm, action }: PowerRequest): Promise<PowerResult> {
    const { libvirt, hostId, fleetId } = this.#o;
    const owner = await libvirt.ownership(vm);
    if (owner === undefined || owner.fleetId !== fleetId || owner.hostId !== hostId) {
      const exists = (await libvirt.state(vm)) !== undefined;
      throw new VirtfleetError(
        "VM_NOT_FOUND",
        exists
          ? `domain "${vm}" on host "${hostId}" is not this fleet's; it is left alone`
          : `no VM "${vm}" on host "${hostId}"`,
        { field: "vm" },
      );
    }
    // Suspending a paused domain does nothing; resuming a running one does nothing (and sets no clock).
    let clockSet: boolean | undefined;
    if (action === "suspend") {
      await libvirt.suspend(vm);
    } else if (await libvirt.resume(vm)) {
      // The guest's clock stood still while it was paused: set it from the RTC (QEMU keeps that on the
      // host's time) when the guest has an agent; a guest without one is left as it is.
      clockSet = await libvirt.setGuestTime(vm, this.#o.agentTimeoutSec ?? 2).catch((error: unknown) => {
        this.#o.logger.warn({ vm, err: error }, "could not set the guest's clock after resume");
        return false;
      });
    }
    const state = await libvirt.state(vm);
    if (state === undefined) throw new VirtfleetError("VM_NOT_FOUND", `VM "${vm}" went away`, { field: "vm" });
    return { state, ...(clockSet === undefined ? {} : { clockSet }) };
  }
}
