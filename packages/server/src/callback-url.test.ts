import type { LookupAddress } from "node:dns";
import { describe, expect, it } from "vitest";
import { guardedLookup, redactUrl, refusedAddress, refusedTarget, scrubUrl } from "./callback-url.js";

const strict = { allowPrivate: false };
const open = { allowPrivate: true };

describe("which addresses webhooks may reach", () => {
  it("public unicast addresses always", () => {
    for (const ip of ["1.1.1.1", "8.8.4.4", "2606:4700::1111", "::ffff:1.1.1.1"])
      expect([ip, refusedAddress(ip, strict)]).toEqual([ip, undefined]);
  });

  // Addresses below are only classified, never contacted.
  it("loopback, RFC 1918, CGNAT, ULA and link-local only when allowed", () => {
    const privates = [
      "127.0.0.1",
      "127.9.9.9",
      "::1",
      "10.0.0.1",
      "172.16.0.1",
      "192.168.1.1",
      "100.64.0.1",
      "169.254.1.1",
      "fe80::1",
      "fc00::1",
      "fd12:3456::1",
      // IPv4 inside IPv6: mapped, NAT64, 6to4
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
      "64:ff9b::7f00:1",
      "2002:7f00:1::",
    ];
    for (const ip of privates) {
      expect([ip, refusedAddress(ip, strict)]).toEqual([ip, expect.stringMatching(/VIRTFLEET_WEBHOOK_ALLOW_PRIVATE/)]);
      expect([ip, refusedAddress(ip, open)]).toEqual([ip, undefined]);
    }
  });

  it("metadata services, unspecified, multicast, broadcast and reserved addresses never", () => {
    const never = [
      "169.254.169.254",
      "::ffff:169.254.169.254",
      "fd00:ec2::254",
      "100.100.100.200",
      "0.0.0.0",
      "::",
      "224.0.0.1",
      "ff02::1",
      "255.255.255.255",
      "240.0.0.1",
      "2001:db8::1",
    ];
    for (const ip of never) {
      expect([ip, refusedAddress(ip, open)]).toEqual([ip, expect.any(String)]);
      expect([ip, refusedAddress(ip, strict)]).toEqual([ip, expect.any(String)]);
    }
  });

  it("checks URLs without DNS: scheme, metadata host names, literal addresses in any spelling", () => {
    const refused = [
      "ftp://1.1.1.1/x",
      "http://metadata.google.internal/computeMetadata/v1/",
      "http://METADATA.GOOGLE.INTERNAL./",
      "http://127.0.0.1:8080/",
      "http://0x7f000001/",
      "http://2130706433/",
      "http://[::1]/",
      "http://[::ffff:7f00:1]/",
    ];
    for (const u of refused) expect([u, refusedTarget(new URL(u), strict)]).toEqual([u, expect.any(String)]);
    for (const u of ["https://1.1.1.1/hook", "https://hooks.example.com/x?y=1"])
      expect([u, refusedTarget(new URL(u), strict)]).toEqual([u, undefined]);
  });
});

describe("guardedLookup", () => {
  const lookup = (policy: { allowPrivate: boolean }, all: boolean) =>
    new Promise<{ error: NodeJS.ErrnoException | null; address: string | LookupAddress[] }>((resolve) =>
      guardedLookup(policy)("localhost", { all }, (error, address) => resolve({ error, address })),
    );

  it("connects to no address the policy refuses (localhost: loopback)", async () => {
    for (const all of [false, true]) {
      const { error } = await lookup(strict, all);
      expect(error?.code).toBe("EADDRREFUSED");
    }
  });

  it("passes allowed addresses through, one or all as asked", async () => {
    const one = await lookup(open, false);
    expect(one.error).toBeNull();
    expect(typeof one.address).toBe("string");
    const every = await lookup(open, true);
    expect(every.error).toBeNull();
    expect(Array.isArray(every.address) && every.address.length > 0).toBe(true);
  });
});

describe("URLs in logs", () => {
  const url = "https://alice:s3cret@hooks.example.com:8443/a/b?token=qqq-123#frag";

  it("redactUrl keeps origin and path only", () => {
    expect(redactUrl(url)).toBe("https://hooks.example.com:8443/a/b");
    expect(redactUrl("not a url")).toBe("(not a URL)");
  });

  it("scrubUrl removes the URL, its credentials and its query from a message", () => {
    const messages = [
      `fetch failed: ${url}`,
      `Request cannot be constructed from a URL that includes credentials: ${new URL(url).href}`,
      "bad query ?token=qqq-123#frag",
      "user alice:s3cret@hooks.example.com",
    ];
    for (const m of messages) {
      const out = scrubUrl(m, url);
      expect(out).not.toMatch(/s3cret|qqq-123|alice|frag/);
    }
    expect(scrubUrl(`fetch failed: ${url}`, url)).toBe("fetch failed: https://hooks.example.com:8443/a/b");
  });
});
