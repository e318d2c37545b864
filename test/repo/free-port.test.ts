import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { freePort, portFree } from "../fixtures/redis-server.js";

/** Linux's range for outgoing connections' source ports. */
const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number) as [
  number,
  number,
];

describe("test fixtures: freePort", () => {
  // A port the kernel may hand to any outgoing connection as its source port (a sentinel dialling a
  // replica, a client reconnecting) can be taken between the pick and the server's (re)start:
  // redis-deploy's second replica once failed "Address already in use" on such a port.
  test("picks ports outside the kernel's source-port range, free to bind", async () => {
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      expect(port < low || port > high, `${port} in ${low}-${high}`).toBe(true);
      expect(await portFree(port)).toBe(true);
    }
  });

  test("with a count, the first of that many consecutive free ports, all outside the range", async () => {
    for (let i = 0; i < 10; i++) {
      const first = await freePort(6);
      for (let p = first; p < first + 6; p++) {
        expect(p < low || p > high, `${p} in ${low}-${high}`).toBe(true);
        expect(await portFree(p)).toBe(true);
      }
    }
  });
});
