import { DEFAULT_READY_PATTERN, type GuestReadyOptions, type ReadyStrategy, VirtfleetError } from "@virtfleet/core";
import { guestAddresses } from "./addresses.js";
import { agentStrategy } from "./agent.js";
import { cloudInitStrategy } from "./cloud-init.js";
import { consoleStrategy } from "./console.js";
import { ipStrategy } from "./ip.js";
import type { ReadinessStrategy, ReadyContext } from "./probe.js";

/** Every strategy by name. */
export const STRATEGIES: Readonly<Record<ReadyStrategy, (o: GuestReadyOptions) => ReadinessStrategy>> = {
  console: (o) => consoleStrategy(o.pattern ?? DEFAULT_READY_PATTERN),
  agent: () => agentStrategy(),
  ip: () => ipStrategy(),
  "cloud-init": () => cloudInitStrategy(),
};

/** How often the domain's state is looked at (a stopped guest fails the wait within this). */
const STATE_CHECK_MS = 1000;

/** States in which a guest may still become ready. */
const ALIVE = new Set(["running", "idle", "paused", "in shutdown", "pmsuspended"]);

export interface GuestReady {
  /** What showed the guest ready, e.g. `guest agent answers`. */
  message: string;
  /** The guest's addresses as far as they are known (IPv4 first); empty when none. */
  addresses: string[];
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

/**
 * Waits until the guest is ready by `options.strategy`. GUEST_TIMEOUT when it is not within
 * `options.timeoutSec`, saying where it got stuck; GUEST_FAILED at once when the domain stops,
 * crashes or goes away meanwhile (with libvirt's reason), or the strategy sees it never will be.
 */
export async function waitForGuest(ctx: ReadyContext, options: GuestReadyOptions): Promise<GuestReady> {
  const strategy = STRATEGIES[options.strategy](options);
  const signal = ctx.run.signal;
  const deadline = Date.now() + options.timeoutSec * 1000;
  const what = options.strategy === "console" ? `console "${options.pattern}"` : options.strategy;
  let checkedAt = 0;
  for (;;) {
    if (signal?.aborted) throw new VirtfleetError("CANCELLED", "cancelled");
    const probe = await strategy.probe(ctx);
    if (probe.ready) return { message: probe.message, addresses: probe.addresses ?? (await guestAddresses(ctx)) };
    const now = Date.now();
    if (now - checkedAt < STATE_CHECK_MS && now < deadline) {
      await sleep(strategy.pollMs, signal);
      continue;
    }
    checkedAt = now;
    const st = await ctx.libvirt.stateReason(ctx.name, ctx.run);
    if (st === undefined)
      throw new VirtfleetError("GUEST_FAILED", `domain ${ctx.name} went away while waiting for ${what}`);
    if (!ALIVE.has(st.state)) {
      throw new VirtfleetError(
        "GUEST_FAILED",
        `guest ${ctx.name} is ${st.state} (${st.reason}) while waiting for ${what}; last: ${probe.stuck}`,
      );
    }
    if (Date.now() >= deadline) {
      throw new VirtfleetError(
        "GUEST_TIMEOUT",
        `guest ${ctx.name} not ready (${what}) within ${options.timeoutSec} s: ${probe.stuck}`,
      );
    }
    await sleep(Math.min(strategy.pollMs, Math.max(0, deadline - Date.now())), signal);
  }
}
