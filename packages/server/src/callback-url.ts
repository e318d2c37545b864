import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import { isIP, type LookupFunction } from "node:net";
import ipaddr from "ipaddr.js";
import { problem } from "./problem.js";

/**
 * Where a webhook may go. Public unicast addresses always; loopback, private (RFC 1918, CGNAT
 * 100.64/10, ULA fc00::/7) and link-local only when the operator allows them
 * (`VIRTFLEET_WEBHOOK_ALLOW_PRIVATE=1`). Never: cloud metadata services, unspecified, multicast,
 * broadcast and reserved addresses, whatever the flag says.
 */
export interface CallbackPolicy {
  allowPrivate: boolean;
}

/** Ranges (as ipaddr.js names them) that only `allowPrivate` opens. */
const PRIVATE_RANGES: ReadonlySet<string> = new Set([
  "loopback",
  "private",
  "carrierGradeNat",
  "linkLocal",
  "uniqueLocal",
]);

/** Cloud metadata services (AWS, GCP, Azure, OpenStack; AWS ECS; Alibaba): never a webhook's target. */
const METADATA_ADDRESSES: ReadonlySet<string> = new Set([
  "169.254.169.254",
  "169.254.170.2",
  "100.100.100.200",
  "fd00:ec2::254",
]);
const METADATA_HOSTS: ReadonlySet<string> = new Set(["metadata.google.internal", "metadata.goog", "metadata"]);

/** IPv6 forms that carry an IPv4 address (mapped, NAT64, SIIT, 6to4): judged as that address. */
function embeddedIPv4(a: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  const bytes = a.toByteArray();
  switch (a.range()) {
    case "ipv4Mapped":
    case "rfc6052":
    case "rfc6145":
      return new ipaddr.IPv4(bytes.slice(12, 16));
    case "6to4":
      return new ipaddr.IPv4(bytes.slice(2, 6));
    default:
      return undefined;
  }
}

/** Why an IP address may not receive webhooks, or undefined when it may. */
export function refusedAddress(ip: string, policy: CallbackPolicy): string | undefined {
  if (!ipaddr.isValid(ip)) return "is not an IP address";
  let a: ipaddr.IPv4 | ipaddr.IPv6 = ipaddr.parse(ip);
  if (a.kind() === "ipv6") a = embeddedIPv4(a as ipaddr.IPv6) ?? a;
  if (METADATA_ADDRESSES.has(a.toString())) return "is a cloud metadata address";
  const range = a.range();
  if (range === "unicast") return undefined;
  if (PRIVATE_RANGES.has(range))
    return policy.allowPrivate ? undefined : `is a ${range} address (set VIRTFLEET_WEBHOOK_ALLOW_PRIVATE=1 to allow)`;
  return `is a ${range} address`;
}

/** A URL's host as a bare name or address: no IPv6 brackets, no trailing dot, lower case. */
function hostOf(url: URL): string {
  return url.hostname
    .replace(/^\[(.*)\]$/, "$1")
    .replace(/\.$/, "")
    .toLowerCase();
}

/**
 * The checks that need no DNS: http(s) only, not a metadata host name, and a literal IP address
 * that the policy allows. Returns the reason for a refusal, or undefined.
 */
export function refusedTarget(url: URL, policy: CallbackPolicy): string | undefined {
  if (url.protocol !== "http:" && url.protocol !== "https:") return "must be an http or https URL";
  const host = hostOf(url);
  if (METADATA_HOSTS.has(host)) return "is a cloud metadata host";
  if (isIP(host) !== 0) {
    const why = refusedAddress(host, policy);
    return why === undefined ? undefined : `${host} ${why}`;
  }
  return undefined;
}

export interface CheckCallbackOptions extends CallbackPolicy {
  /** How long a name may take to resolve. Default 5000 ms. */
  resolveTimeoutMs?: number;
}

/**
 * Request-time check of a callback URL: the URL, then every address its host name resolves to.
 * Throws INVALID_SPEC (field `callbackUrl`). The delivery checks again on the address it connects to
 * (see `guardedLookup`): a name may resolve elsewhere later.
 */
export async function checkCallbackUrl(raw: string, options: CheckCallbackOptions): Promise<void> {
  const refuse = (why: string) => problem("INVALID_SPEC", `the callback URL ${why}`, "callbackUrl");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refuse("is not a URL");
  }
  const why = refusedTarget(url, options);
  if (why !== undefined) throw refuse(why);
  const host = hostOf(url);
  if (isIP(host) !== 0) return;
  let addresses: LookupAddress[];
  try {
    addresses = await withTimeout(resolveAll(host), options.resolveTimeoutMs ?? 5000);
  } catch {
    throw refuse(`host ${host} does not resolve`);
  }
  for (const { address } of addresses) {
    const bad = refusedAddress(address, options);
    if (bad !== undefined) throw refuse(`host ${host} resolves to ${address}, which ${bad}`);
  }
}

function resolveAll(host: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) =>
    dnsLookup(host, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))),
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("timed out")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A `lookup` for net/tls connections that drops every resolved address the policy refuses, so a
 * delivery connects only to an allowed address (a name that resolved to a public address at request
 * time and to 127.0.0.1 now gets nowhere: DNS rebinding). Literal IPs never reach a lookup: check
 * them with `refusedTarget` before connecting.
 */
export function guardedLookup(policy: CallbackPolicy): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "", 0);
      const allowed = addresses.filter((a) => refusedAddress(a.address, policy) === undefined);
      const first = allowed[0];
      if (first === undefined) {
        const refused = Object.assign(new Error(`${hostname} resolves to no address webhooks may use`), {
          code: "EADDRREFUSED",
        });
        return callback(refused, "", 0);
      }
      if (options.all === true) return callback(null, allowed);
      return callback(null, first.address, first.family);
    });
  };
}

/** A URL as logs and errors may show it: origin and path, never credentials, query or fragment. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.origin}${url.pathname}`;
  } catch {
    return "(not a URL)";
  }
}

/** `text` (an error message) with every secret part of `raw` replaced: the URL itself, credentials, query. */
export function scrubUrl(text: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return text.replaceAll(raw, "(callback URL)");
  }
  let out = text;
  for (const whole of new Set([raw, url.href])) out = out.replaceAll(whole, redactUrl(raw));
  const secrets = [url.search, url.hash, url.password, decodeSafe(url.password)];
  if (url.username !== "") secrets.push(`${url.username}:`, `${url.username}@`, `${decodeSafe(url.username)}:`);
  for (const s of secrets.filter((s) => s.length > 1).sort((a, b) => b.length - a.length))
    out = out.replaceAll(s, "[redacted]");
  return out;
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
