import { ValidationError } from "@virtfleet/core";
import {
  DEFAULT_MAX_STREAMS_PER_TOKEN,
  DEFAULT_STREAM_CONNECTIONS,
  DEFAULT_WEBHOOK_CONCURRENCY,
} from "@virtfleet/server";
import { describe, expect, it } from "vitest";
import { parseApiEnv } from "./env.js";

const base = { VIRTFLEET_API_TOKENS_FILE: "/etc/virtfleet/tokens.json" };

describe("the API's webhook settings", () => {
  it("default: private addresses refused, DEFAULT_WEBHOOK_CONCURRENCY deliveries at once", () => {
    const env = parseApiEnv(base);
    expect(env.VIRTFLEET_WEBHOOK_ALLOW_PRIVATE).toBe(false);
    expect(env.VIRTFLEET_WEBHOOK_CONCURRENCY).toBe(DEFAULT_WEBHOOK_CONCURRENCY);
  });

  it("VIRTFLEET_WEBHOOK_ALLOW_PRIVATE=1 (or true) allows them", () => {
    expect(parseApiEnv({ ...base, VIRTFLEET_WEBHOOK_ALLOW_PRIVATE: "1" }).VIRTFLEET_WEBHOOK_ALLOW_PRIVATE).toBe(true);
    expect(parseApiEnv({ ...base, VIRTFLEET_WEBHOOK_ALLOW_PRIVATE: "true" }).VIRTFLEET_WEBHOOK_ALLOW_PRIVATE).toBe(
      true,
    );
    expect(parseApiEnv({ ...base, VIRTFLEET_WEBHOOK_ALLOW_PRIVATE: "0" }).VIRTFLEET_WEBHOOK_ALLOW_PRIVATE).toBe(false);
  });

  it("a bad value is a ValidationError naming the variable", () => {
    for (const [key, value] of [
      ["VIRTFLEET_WEBHOOK_ALLOW_PRIVATE", "yes"],
      ["VIRTFLEET_WEBHOOK_CONCURRENCY", "0"],
      ["VIRTFLEET_WEBHOOK_CONCURRENCY", "many"],
    ] as const) {
      const error = (() => {
        try {
          parseApiEnv({ ...base, [key]: value });
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(key);
    }
  });
});

describe("API configuration: streams and metrics", () => {
  it("fills the documented defaults: metrics need a token, streams are bounded", () => {
    const env = parseApiEnv(base);
    expect(env).toMatchObject({
      VIRTFLEET_METRICS_AUTH: "token",
      VIRTFLEET_API_STREAM_CONNECTIONS: DEFAULT_STREAM_CONNECTIONS,
      VIRTFLEET_API_MAX_STREAMS_PER_TOKEN: DEFAULT_MAX_STREAMS_PER_TOKEN,
    });
    expect(env.VIRTFLEET_METRICS_PORT).toBeUndefined();
  });

  it("reads a metrics listener of its own", () => {
    const env = parseApiEnv({
      ...base,
      VIRTFLEET_METRICS_AUTH: "none",
      VIRTFLEET_METRICS_HOST: "127.0.0.2",
      VIRTFLEET_METRICS_PORT: "9464",
    });
    expect(env).toMatchObject({
      VIRTFLEET_METRICS_AUTH: "none",
      VIRTFLEET_METRICS_HOST: "127.0.0.2",
      VIRTFLEET_METRICS_PORT: 9464,
    });
  });

  it.each([
    [{ VIRTFLEET_METRICS_AUTH: "open" }, "VIRTFLEET_METRICS_AUTH"],
    [{ VIRTFLEET_METRICS_PORT: "70000" }, "VIRTFLEET_METRICS_PORT"],
    [{ VIRTFLEET_API_STREAM_CONNECTIONS: "0" }, "VIRTFLEET_API_STREAM_CONNECTIONS"],
    [{ VIRTFLEET_API_MAX_STREAMS_PER_TOKEN: "-1" }, "VIRTFLEET_API_MAX_STREAMS_PER_TOKEN"],
  ])("refuses %o, naming the field", (bad, field) => {
    expect(() => parseApiEnv({ ...base, ...bad })).toThrow(expect.objectContaining({ field }));
  });
});
