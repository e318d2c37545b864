import { type GuestReadyInput, GuestReadyOptions, ReadyStrategy, ValidationError } from "@virtfleet/core";

/**
 * `--wait-ready [STRATEGY]` (with `--ready-timeout SEC`) as the API's `guestReady`. STRATEGY is
 * `console[=PATTERN]`, `agent`, `ip` or `cloud-init`; anything else is a console pattern, as before
 * (`--wait-ready READY` means `console=READY`); no value means `console` (VIRTFLEET_READY).
 * Checked here, so a bad value names the flag and nothing is enqueued.
 */
export function parseWaitReady(raw: string | true, timeoutSec: number | undefined): GuestReadyInput {
  let ready: GuestReadyInput;
  if (raw === true) ready = {};
  else if (raw.startsWith("console=")) ready = { strategy: "console", pattern: raw.slice("console=".length) };
  else if (ReadyStrategy.safeParse(raw).success) ready = { strategy: raw as ReadyStrategy };
  else {
    const eq = raw.indexOf("=");
    const head = eq === -1 ? "" : raw.slice(0, eq);
    if (head !== "" && ReadyStrategy.safeParse(head).success)
      throw new ValidationError([{ field: "--wait-ready", message: `"${head}" takes no value` }]);
    ready = { strategy: "console", pattern: raw };
  }
  if (timeoutSec !== undefined) ready.timeoutSec = timeoutSec;
  const checked = GuestReadyOptions.safeParse(ready);
  if (!checked.success) {
    throw new ValidationError(
      checked.error.issues.map((i) => ({
        field: i.path[0] === "timeoutSec" ? "--ready-timeout" : "--wait-ready",
        message: i.message,
      })),
    );
  }
  return ready;
}
