import { DEFAULT_WEBHOOK_CONCURRENCY } from "@virtfleet/api";
import { ValidationError } from "@virtfleet/core";
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
