import {
  DEFAULT_CONCURRENCY,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_IMAGE_CACHE_GB,
  DEFAULT_IMAGE_DIR,
  DEFAULT_LIBVIRT_URI,
  DEFAULT_LOCK_MS,
  DEFAULT_MAX_STALLED,
  DEFAULT_OVERCOMMIT_CPU,
  DEFAULT_OVERCOMMIT_DISK,
  DEFAULT_OVERCOMMIT_MEMORY,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  DEFAULT_STALLED_INTERVAL_MS,
  DEFAULT_STORAGE_DIR,
  DEFAULT_VIRT_TYPE,
} from "@virtfleet/agent";
import { DEFAULT_LOG_LEVEL } from "@virtfleet/core";
import { DEFAULT_PREFIX, DEFAULT_REDIS_URL } from "@virtfleet/fleet";
import { describe, expect, it } from "vitest";
import { parseWorkerEnv } from "./env.js";

describe("the worker's defaults are the packages' own (defined once)", () => {
  it("every unset variable takes the constant HostAgent falls back to", () => {
    expect(parseWorkerEnv({})).toMatchObject({
      REDIS_URL: DEFAULT_REDIS_URL,
      VIRTFLEET_PREFIX: DEFAULT_PREFIX,
      VIRTFLEET_LIBVIRT_URI: DEFAULT_LIBVIRT_URI,
      VIRTFLEET_VIRT_TYPE: DEFAULT_VIRT_TYPE,
      VIRTFLEET_STORAGE_DIR: DEFAULT_STORAGE_DIR,
      VIRTFLEET_IMAGE_DIR: DEFAULT_IMAGE_DIR,
      VIRTFLEET_CONCURRENCY: DEFAULT_CONCURRENCY,
      VIRTFLEET_OVERCOMMIT_MEMORY: DEFAULT_OVERCOMMIT_MEMORY,
      VIRTFLEET_OVERCOMMIT_CPU: DEFAULT_OVERCOMMIT_CPU,
      VIRTFLEET_OVERCOMMIT_DISK: DEFAULT_OVERCOMMIT_DISK,
      VIRTFLEET_IMAGE_CACHE_GB: DEFAULT_IMAGE_CACHE_GB,
      VIRTFLEET_HEARTBEAT_MS: DEFAULT_HEARTBEAT_MS,
      VIRTFLEET_SHUTDOWN_TIMEOUT_MS: DEFAULT_SHUTDOWN_TIMEOUT_MS,
      VIRTFLEET_LOCK_MS: DEFAULT_LOCK_MS,
      VIRTFLEET_STALLED_INTERVAL_MS: DEFAULT_STALLED_INTERVAL_MS,
      VIRTFLEET_MAX_STALLED: DEFAULT_MAX_STALLED,
      LOG_LEVEL: DEFAULT_LOG_LEVEL,
    });
  });

  it("the documented values of those constants (the README's Configuration table)", () => {
    expect([
      DEFAULT_PREFIX,
      DEFAULT_LIBVIRT_URI,
      DEFAULT_VIRT_TYPE,
      DEFAULT_STORAGE_DIR,
      DEFAULT_IMAGE_DIR,
      DEFAULT_LOG_LEVEL,
    ]).toEqual(["virtfleet", "qemu:///system", "auto", "/var/lib/virtfleet/vms", "/var/lib/virtfleet/images", "info"]);
    expect([
      DEFAULT_CONCURRENCY,
      DEFAULT_OVERCOMMIT_MEMORY,
      DEFAULT_OVERCOMMIT_CPU,
      DEFAULT_HEARTBEAT_MS,
      DEFAULT_LOCK_MS,
      DEFAULT_STALLED_INTERVAL_MS,
      DEFAULT_MAX_STALLED,
    ]).toEqual([4, 1, 4, 5000, 30_000, 15_000, 10]);
  });

  it.each([
    [{ VIRTFLEET_PREFIX: "bad prefix" }, "VIRTFLEET_PREFIX"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
  ])("rejects %o naming %s", (input, field) => {
    expect(() => parseWorkerEnv(input)).toThrow(expect.objectContaining({ code: "INVALID_SPEC", field }));
  });
});
