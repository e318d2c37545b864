import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Evidence, judge } from "./ownership-rule.js";

const FLEET = "fleet-a";
const HOST = "host-1";

function evidence(extra: Partial<Evidence> = {}, made: Partial<Evidence["made"]> = {}): Evidence {
  return {
    accounted: false,
    made: { hostId: HOST, fleetId: FLEET, jobId: "job-1", ...made },
    thisHost: HOST,
    thisFleet: FLEET,
    jobPhase: "failed",
    ...extra,
  };
}

describe("judge: delete or orphan", () => {
  it("deletes what this fleet made here for a job that failed or was cancelled", () => {
    expect(judge(evidence({ jobPhase: "failed" }))).toEqual({ action: "delete", reason: "job job-1 failed" });
    expect(judge(evidence({ jobPhase: "cancelled" }))).toEqual({ action: "delete", reason: "job job-1 cancelled" });
  });

  it("keeps what a live job or a known VM accounts for, whatever its job did", () => {
    for (const jobPhase of ["failed", "cancelled", "done", undefined] as const)
      expect(judge(evidence({ accounted: true, jobPhase }))).toEqual({ action: "keep" });
  });

  it("an empty Redis (the job is unknown) proves nothing: orphan", () => {
    expect(judge(evidence({ jobPhase: undefined }))).toMatchObject({
      action: "orphan",
      reason: expect.stringContaining("not known"),
    });
  });

  it("another fleet (another prefix, database or a Redis that lost its id): orphan, even for a failed job", () => {
    expect(judge(evidence({ thisFleet: "fleet-b" }))).toMatchObject({
      action: "orphan",
      reason: expect.stringContaining("another fleet"),
    });
  });

  it("metadata of an older virtfleet (no fleet id): orphan", () => {
    const e = evidence();
    delete e.made.fleetId;
    expect(judge(e)).toMatchObject({ action: "orphan", reason: expect.stringContaining("without a fleet id") });
  });

  it("made for another host: orphan", () => {
    expect(judge(evidence({}, { hostId: "host-2" }))).toMatchObject({ action: "orphan" });
  });

  it("a job that is done or still running but unaccounted for: orphan", () => {
    for (const jobPhase of ["done", "queued", "domain.defining"] as const)
      expect(judge(evidence({ jobPhase }))).toMatchObject({ action: "orphan" });
  });

  it("deletes only with every proof: same host, same fleet, a failed or cancelled job, not accounted", () => {
    const phases = ["queued", "placed", "domain.defining", "done", "failed", "cancelled", undefined] as const;
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.constantFrom("host-1", "host-2"),
        fc.constantFrom(FLEET, "fleet-b", undefined),
        fc.constantFrom(...phases),
        (accounted, hostId, fleetId, jobPhase) => {
          const made = { hostId, jobId: "j", ...(fleetId === undefined ? {} : { fleetId }) };
          const verdict = judge({ accounted, made, thisHost: HOST, thisFleet: FLEET, jobPhase });
          const proven =
            !accounted && hostId === HOST && fleetId === FLEET && (jobPhase === "failed" || jobPhase === "cancelled");
          expect(verdict.action === "delete").toBe(proven);
          expect(verdict.action === "keep").toBe(accounted);
        },
      ),
    );
  });
});
