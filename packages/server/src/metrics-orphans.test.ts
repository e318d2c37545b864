import type { FleetClient } from "@virtfleet/fleet";
import { describe, expect, it } from "vitest";
import { hostStatus } from "../../../test/fixtures/host-status.js";
import { Metrics } from "./metrics.js";

describe("virtfleet_orphans", () => {
  it("counts each host's reported orphans", async () => {
    const orphans = [
      { vm: "a", kind: "domain" as const, reason: "job j is not known to this fleet" },
      { vm: "b", kind: "folder" as const, reason: "no virtfleet marker" },
    ];
    const views = [
      { status: hostStatus("h1", { orphans }), up: true, draining: false, allocation: zero() },
      { status: hostStatus("h2"), up: false, draining: false, allocation: zero() },
    ];
    const fleet = { hosts: { list: async () => views }, queueCounts: async () => ({}) } as unknown as FleetClient;
    const text = await new Metrics(fleet).registry.metrics();
    expect(text).toContain('virtfleet_orphans{host="h1"} 2');
    expect(text).toContain('virtfleet_orphans{host="h2"} 0');
  });
});

function zero() {
  return { capacity: { memoryMiB: 0, vcpus: 0 }, allocated: { memoryMiB: 0, vcpus: 0 } };
}
