import { DEFAULT_LOG_LEVEL } from "@virtfleet/core";
import { DEFAULT_CONSOLE_TIMEOUT_MS, DEFAULT_PREFIX } from "@virtfleet/fleet";
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_BODY_LIMIT, DEFAULT_IDEMPOTENCY_TTL_SEC } from "@virtfleet/server";
import { describe, expect, it } from "vitest";
import { parseApiEnv } from "./env.js";

const base = { VIRTFLEET_API_TOKENS_FILE: "/etc/virtfleet/tokens.json" };

describe("the API's defaults are @virtfleet/server's own (defined once)", () => {
  it("every unset variable takes the constant ApiServer falls back to", () => {
    expect(parseApiEnv(base)).toMatchObject({
      VIRTFLEET_PREFIX: DEFAULT_PREFIX,
      VIRTFLEET_API_HOST: DEFAULT_API_HOST,
      VIRTFLEET_API_PORT: DEFAULT_API_PORT,
      VIRTFLEET_API_BODY_LIMIT: DEFAULT_BODY_LIMIT,
      VIRTFLEET_IDEMPOTENCY_TTL_SEC: DEFAULT_IDEMPOTENCY_TTL_SEC,
      VIRTFLEET_API_CONSOLE_TIMEOUT_MS: DEFAULT_CONSOLE_TIMEOUT_MS,
      LOG_LEVEL: DEFAULT_LOG_LEVEL,
    });
    expect([DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_BODY_LIMIT, DEFAULT_IDEMPOTENCY_TTL_SEC]).toEqual([
      "127.0.0.1",
      8080,
      1024 * 1024,
      86_400,
    ]);
  });

  it.each([
    [{ VIRTFLEET_PREFIX: "bad prefix" }, "VIRTFLEET_PREFIX"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ VIRTFLEET_API_CONSOLE_TIMEOUT_MS: "soon" }, "VIRTFLEET_API_CONSOLE_TIMEOUT_MS"],
  ])("rejects %o naming %s", (input, field) => {
    expect(() => parseApiEnv({ ...base, ...input })).toThrow(expect.objectContaining({ code: "INVALID_SPEC", field }));
  });
});
