import { describe, expect, it } from "vitest";
import { pickEvictions } from "./eviction.js";

describe("pickEvictions", () => {
  const files = [
    { id: "new", size: 50, usedAt: 300 },
    { id: "old", size: 30, usedAt: 100 },
    { id: "mid", size: 40, usedAt: 200 },
  ];

  it("removes the least recently used first, and only as many as it takes", () => {
    expect(pickEvictions(files, 120, 90).map((f) => f.id)).toEqual(["old"]);
    expect(pickEvictions(files, 120, 60).map((f) => f.id)).toEqual(["old", "mid"]);
  });

  it("removes nothing under the limit, everything when even that is not enough", () => {
    expect(pickEvictions(files, 120, 120)).toEqual([]);
    expect(pickEvictions(files, 500, 10).map((f) => f.id)).toEqual(["old", "mid", "new"]);
  });
});
