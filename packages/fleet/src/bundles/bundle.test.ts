import { describe, expect, test } from "vitest";
import { createData } from "../../../../test/fixtures/host-queue.js";
import { retryDelayMs } from "../producer/job-options.js";
import { BUNDLE_MAX_JOBS, bundleJobId, jobsInQueueEntry, queuedJobs, splitIntoBundles } from "./bundle.js";

const create = (n: number) => createData(n, "h1", "b");

describe("bundles", () => {
  test("split into bundles of at most the maximum, as even as can be, in order", () => {
    const jobs = Array.from({ length: 2 * BUNDLE_MAX_JOBS + 1 }, (_, i) => i);
    const bundles = splitIntoBundles(jobs);
    expect(bundles).toHaveLength(3);
    expect(bundles.every((b) => b.length <= BUNDLE_MAX_JOBS)).toBe(true);
    expect(Math.max(...bundles.map((b) => b.length)) - Math.min(...bundles.map((b) => b.length))).toBeLessThanOrEqual(
      1,
    );
    expect(bundles.flat()).toEqual(jobs);
    expect(splitIntoBundles([1, 2, 3], 10)).toEqual([[1, 2, 3]]);
    expect(splitIntoBundles([], 10)).toEqual([]);
  });

  test("a bundle's id says how many jobs it carries; any other id is one job", () => {
    const id = bundleJobId(37);
    expect(id).toMatch(/^bundle-37-[0-9a-f-]{36}$/);
    expect(jobsInQueueEntry(id)).toBe(37);
    expect(jobsInQueueEntry("create-0f3a")).toBe(1);
    expect(jobsInQueueEntry("destroy-bundle-3-x")).toBe(1);
  });

  test("a queue entry's jobs: a single job, a bundle's in order; what does not parse is named", () => {
    expect(queuedJobs({ name: "create", data: create(1) }).jobs.map((j) => j.jobId)).toEqual(["create-1"]);
    const bundle = queuedJobs({ name: "bundle", data: { jobs: [create(1), { ...create(2), spec: {} }, create(3)] } });
    expect(bundle.jobs.map((j) => j.jobId)).toEqual(["create-1", "create-3"]);
    expect(bundle.bad).toHaveLength(1);
    expect(bundle.bad[0]?.field).toMatch(/^bundle\.jobs\.1\.spec/);
    const broken = queuedJobs({ name: "bundle", data: { jobs: [] } });
    expect(broken.jobs).toEqual([]);
    expect(broken.bad[0]?.field).toBe("bundle.jobs");
    expect(queuedJobs({ name: "create", data: { kind: "create" } }).bad[0]?.field).toMatch(/^job\./);
  });

  test("a bundle's job waits before its next attempt as BullMQ's exponential backoff with jitter would", () => {
    expect(retryDelayMs(1, () => 0)).toBe(2000);
    expect(retryDelayMs(1, () => 1)).toBe(1000);
    expect(retryDelayMs(3, () => 0)).toBe(8000);
    expect(retryDelayMs(3, () => 0.5)).toBe(6000);
  });
});
