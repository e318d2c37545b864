import { describe, expect, it } from "vitest";
import { parseWorkerEnv } from "./env.js";

describe("worker configuration", () => {
  it("fills documented defaults", () => {
    const env = parseWorkerEnv({});
    expect(env).toMatchObject({
      REDIS_URL: "redis://127.0.0.1:6379",
      VIRTFLEET_LIBVIRT_URI: "qemu:///system",
      VIRTFLEET_VIRT_TYPE: "auto",
      VIRTFLEET_CONCURRENCY: 4,
      VIRTFLEET_STORAGE_DIR: "/var/lib/virtfleet/vms",
      VIRTFLEET_LABELS: {},
      VIRTFLEET_OVERCOMMIT_DISK: 1,
      VIRTFLEET_IMAGE_CACHE_GB: 0,
    });
    expect(env.VIRTFLEET_HOST_ID.length).toBeGreaterThan(0);
  });

  it("parses labels and numbers", () => {
    const env = parseWorkerEnv({
      VIRTFLEET_LABELS: "rack=r1, ssd=true",
      VIRTFLEET_CONCURRENCY: "8",
      VIRTFLEET_VIRT_TYPE: "qemu",
    });
    expect(env.VIRTFLEET_LABELS).toEqual({ rack: "r1", ssd: "true" });
    expect(env.VIRTFLEET_CONCURRENCY).toBe(8);
    expect(env.VIRTFLEET_VIRT_TYPE).toBe("qemu");
  });

  it("builds the Redis configuration from the Redis variables", () => {
    const env = parseWorkerEnv({ REDIS_URL: "redis://h:6380/1", REDIS_USERNAME: "w", REDIS_PASSWORD: "p" });
    expect(env.redis).toEqual({ url: "redis://h:6380/1", username: "w", password: "p" });
  });

  it.each([
    [{ VIRTFLEET_CONCURRENCY: "0" }, "VIRTFLEET_CONCURRENCY"],
    [{ VIRTFLEET_CONCURRENCY: "many" }, "VIRTFLEET_CONCURRENCY"],
    [{ VIRTFLEET_VIRT_TYPE: "xen" }, "VIRTFLEET_VIRT_TYPE"],
    [{ REDIS_URL: "not a url" }, "REDIS_URL"],
    [{ REDIS_URL: "http://127.0.0.1:6379" }, "REDIS_URL"],
    [{ REDIS_PASSWORD_FILE: "/nonexistent/redis.password" }, "REDIS_PASSWORD_FILE"],
    [{ REDIS_TLS_CA_FILE: "/etc/ssl/certs/ca-certificates.crt" }, "REDIS_TLS_CA_FILE"],
    [{ VIRTFLEET_HOST_ID: "a:b" }, "VIRTFLEET_HOST_ID"],
    [{ VIRTFLEET_LABELS: "novalue" }, "VIRTFLEET_LABELS"],
    [{ VIRTFLEET_ALLOWED_NETWORKS: "br0,mac=x" }, "VIRTFLEET_ALLOWED_NETWORKS"],
    [{ VIRTFLEET_ALLOWED_NETWORKS: "network=a b" }, "VIRTFLEET_ALLOWED_NETWORKS"],
    [{ VIRTFLEET_QEMU_USER: "a:b" }, "VIRTFLEET_QEMU_USER"],
    [{ VIRTFLEET_QEMU_GROUP: "" }, "VIRTFLEET_QEMU_GROUP"],
    [{ VIRTFLEET_OVERCOMMIT_DISK: "0" }, "VIRTFLEET_OVERCOMMIT_DISK"],
    [{ VIRTFLEET_OVERCOMMIT_DISK: "lots" }, "VIRTFLEET_OVERCOMMIT_DISK"],
    [{ VIRTFLEET_IMAGE_CACHE_GB: "-1" }, "VIRTFLEET_IMAGE_CACHE_GB"],
    [{ VIRTFLEET_IMAGE_CACHE_GB: "big" }, "VIRTFLEET_IMAGE_CACHE_GB"],
  ])("rejects %o naming %s", (input, field) => {
    expect(() => parseWorkerEnv(input)).toThrow(expect.objectContaining({ code: "INVALID_SPEC", field }));
  });

  it("reads the network allow-list: unset is any, empty is none, entries are NAME, bridge=NAME, network=NAME", () => {
    expect(parseWorkerEnv({}).VIRTFLEET_ALLOWED_NETWORKS).toBeUndefined();
    expect(parseWorkerEnv({ VIRTFLEET_ALLOWED_NETWORKS: "" }).VIRTFLEET_ALLOWED_NETWORKS).toEqual([]);
    expect(
      parseWorkerEnv({ VIRTFLEET_ALLOWED_NETWORKS: " br-lab, network=lab,bridge=br0 " }).VIRTFLEET_ALLOWED_NETWORKS,
    ).toEqual([
      { type: "bridge", name: "br-lab" },
      { type: "network", name: "lab" },
      { type: "bridge", name: "br0" },
    ]);
  });

  it("defaults the QEMU user to libvirt-qemu, with no group (the user's own)", () => {
    const env = parseWorkerEnv({});
    expect(env.VIRTFLEET_QEMU_USER).toBe("libvirt-qemu");
    expect(env.VIRTFLEET_QEMU_GROUP).toBeUndefined();
    expect(parseWorkerEnv({ VIRTFLEET_QEMU_USER: "qemu", VIRTFLEET_QEMU_GROUP: "kvm" })).toMatchObject({
      VIRTFLEET_QEMU_USER: "qemu",
      VIRTFLEET_QEMU_GROUP: "kvm",
    });
  });

  it("runs the controller by default; VIRTFLEET_CONTROLLER=0 leaves it to others; a bad value names the field", () => {
    expect(parseWorkerEnv({})).toMatchObject({
      VIRTFLEET_CONTROLLER: true,
      VIRTFLEET_CONTROLLER_LOCK_MS: 15_000,
      VIRTFLEET_REAPER_INTERVAL_MS: 1000,
      VIRTFLEET_ORPHAN_SWEEP_MS: 30_000,
    });
    expect(parseWorkerEnv({ VIRTFLEET_CONTROLLER: "0" }).VIRTFLEET_CONTROLLER).toBe(false);
    expect(parseWorkerEnv({ VIRTFLEET_CONTROLLER: "1" }).VIRTFLEET_CONTROLLER).toBe(true);
    expect(() => parseWorkerEnv({ VIRTFLEET_CONTROLLER: "maybe" })).toThrow(/VIRTFLEET_CONTROLLER/);
    expect(() => parseWorkerEnv({ VIRTFLEET_REAPER_INTERVAL_MS: "fast" })).toThrow(/VIRTFLEET_REAPER_INTERVAL_MS/);
  });
});
