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
  ])("rejects %o naming %s", (input, field) => {
    expect(() => parseWorkerEnv(input)).toThrow(expect.objectContaining({ code: "INVALID_SPEC", field }));
  });
});
