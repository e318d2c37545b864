import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyCookie from "@fastify/cookie";
import fastifyStatic from "@fastify/static";
import { BatchRequest, CreateVmRequest, parseOrThrow, VirtfleetError } from "@virtfleet/core";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { SESSION_COOKIE, UI_HEADER } from "./defaults.js";
import type { SessionStore } from "./session-store.js";

/** Who the dashboard's caller is, as the API resolved it (bearer token or session cookie). */
export interface DashboardPrincipal {
  tokenId: string;
  tenant: string;
  scopes: ReadonlySet<string>;
}

export interface DashboardOptions {
  sessions: SessionStore;
  /** A token the API knows: its SHA-256 and caller; undefined otherwise (checked exactly like the API). */
  checkToken(token: string): { tokenSha256: string; principal: DashboardPrincipal } | undefined;
  /** The request's caller, when signed in (the API's principal resolver). */
  principal(request: FastifyRequest): DashboardPrincipal | undefined;
}

/** `POST /ui/session`. */
export const SignInRequest = z.object({ token: z.string().min(1).max(4096) }).strict();

const publicDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../public");
const require = createRequire(import.meta.url);
/** A package's folder, from its main file (`<pkg>/dist/<main>.js`). */
const pkgDir = (name: string) => path.resolve(path.dirname(require.resolve(name)), "..");

/** The browser modules the page loads, from node_modules (no CDN: the page works air-gapped). */
function vendorFiles(): Map<string, string> {
  const preact = pkgDir("preact");
  const htm = pkgDir("htm");
  const files = new Map<string, string>([
    ["preact.js", path.join(preact, "dist/preact.module.js")],
    ["preact-hooks.js", path.join(preact, "hooks/dist/hooks.module.js")],
    ["htm.js", path.join(htm, "dist/htm.module.js")],
    ["htm-preact.js", path.join(htm, "preact/index.module.js")],
  ]);
  const virtual = path.join(path.dirname(require.resolve("@tanstack/virtual-core")), "../esm");
  for (const f of ["index.js", "utils.js", "lazy-measurements.js", "scroll-classifier.js", "ios-gesture.js"])
    files.set(`virtual-core/${f}`, path.join(virtual, f));
  return files;
}

const vendorCache = new Map<string, string>();

/**
 * A vendor module's source, with `process.env.NODE_ENV` replaced by "production" as a bundler's
 * define would (virtual-core reads it; a browser has no `process`).
 */
async function vendorSource(file: string): Promise<string> {
  let source = vendorCache.get(file);
  if (source === undefined) {
    source = (await readFile(file, "utf8")).replaceAll("process.env.NODE_ENV", '"production"');
    vendorCache.set(file, source);
  }
  return source;
}

const IMPORT_MAP = JSON.stringify({
  imports: {
    preact: "/ui/vendor/preact.js",
    "preact/hooks": "/ui/vendor/preact-hooks.js",
    htm: "/ui/vendor/htm.js",
    "htm/preact": "/ui/vendor/htm-preact.js",
    "@tanstack/virtual-core": "/ui/vendor/virtual-core/index.js",
  },
});

function indexHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<title>virtfleet</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/style.css">
<script type="importmap">${IMPORT_MAP}</script>
<script type="module" src="/ui/app.js"></script>
</head>
<body><div id="app"><p class="boot">Loading…</p></div></body>
</html>
`;
}

/** Only our own origin; the import map is the one inline script, allowed by its hash. */
const CSP = [
  "default-src 'self'",
  `script-src 'self' 'sha256-${createHash("sha256").update(IMPORT_MAP).digest("base64")}'`,
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join("; ");

function securityHeaders(reply: FastifyReply): void {
  void reply.header("content-security-policy", CSP);
  void reply.header("x-content-type-options", "nosniff");
  void reply.header("referrer-policy", "no-referrer");
}

/** True when a request changes things (and so needs the CSRF header when authenticated by cookie). */
export function isMutating(method: string): boolean {
  return method !== "GET" && method !== "HEAD" && method !== "OPTIONS";
}

/** True when the request carries the dashboard's CSRF header. */
export function hasUiHeader(request: FastifyRequest): boolean {
  return request.headers[UI_HEADER] === "1";
}

function requireUiHeader(request: FastifyRequest): void {
  if (!hasUiHeader(request))
    throw new VirtfleetError("FORBIDDEN", "dashboard requests that change things need the X-Virtfleet-UI: 1 header", {
      field: "X-Virtfleet-UI",
    });
}

/**
 * The dashboard at /ui/: the static app (Preact + htm from node_modules through an import map), its
 * sign-in (`POST /ui/session` → an HttpOnly, SameSite=Strict session cookie; `DELETE /ui/session`),
 * who is signed in (`GET /ui/session`), and the create form's schema and check (the API's own zod
 * schemas: `GET /ui/schema/{create-vm,batch}.json`, `POST /ui/validate/{create-vm,batch}`).
 * Registers @fastify/cookie on `app` (the API reads the cookie too); call before the API's auth hook.
 */
export async function registerDashboard(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  await app.register(fastifyCookie);
  const vendor = vendorFiles();
  const html = indexHtml();
  const schemas = {
    "create-vm": CreateVmRequest,
    batch: BatchRequest,
  } as const;
  const jsonSchemas = new Map(
    Object.entries(schemas).map(([name, schema]) => [
      name,
      z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }),
    ]),
  );

  app.get("/ui", (_request, reply) => reply.redirect("/ui/"));
  app.get("/ui/", (_request, reply) => {
    securityHeaders(reply);
    return reply.type("text/html; charset=utf-8").header("cache-control", "no-store").send(html);
  });
  await app.register(fastifyStatic, {
    root: publicDir,
    prefix: "/ui/",
    decorateReply: false,
    index: false,
    wildcard: false,
    setHeaders: (res) => {
      res.setHeader("content-security-policy", CSP);
      res.setHeader("x-content-type-options", "nosniff");
    },
  });
  app.get("/ui/vendor/*", async (request, reply) => {
    const file = vendor.get((request.params as { "*": string })["*"]);
    if (file === undefined) throw new VirtfleetError("NOT_FOUND", "no such file");
    return reply
      .type("text/javascript; charset=utf-8")
      .header("cache-control", "public, max-age=3600")
      .send(await vendorSource(file));
  });

  app.post("/ui/session", async (request, reply) => {
    requireUiHeader(request);
    const { token } = parseOrThrow(SignInRequest, request.body, "");
    const known = options.checkToken(token);
    if (known === undefined) throw new VirtfleetError("UNAUTHENTICATED", "unknown token", { field: "token" });
    const old = request.cookies[SESSION_COOKIE];
    if (old !== undefined) await options.sessions.remove(old);
    const id = await options.sessions.create(known.tokenSha256);
    void reply.setCookie(SESSION_COOKIE, id, {
      httpOnly: true,
      sameSite: "strict",
      path: "/",
      secure: request.protocol === "https",
      maxAge: options.sessions.ttlSec,
    });
    return reply.status(201).send(whoami(known.principal));
  });

  app.get("/ui/session", async (request) => {
    const p = options.principal(request);
    if (p === undefined) throw new VirtfleetError("UNAUTHENTICATED", "not signed in");
    return whoami(p);
  });

  app.delete("/ui/session", async (request, reply) => {
    requireUiHeader(request);
    const id = request.cookies[SESSION_COOKIE];
    if (id !== undefined) await options.sessions.remove(id);
    void reply.clearCookie(SESSION_COOKIE, { path: "/", httpOnly: true, sameSite: "strict" });
    return { signedOut: true };
  });

  app.get("/ui/schema/:name", async (request) => {
    const name = (request.params as { name: string }).name.replace(/\.json$/, "");
    const schema = jsonSchemas.get(name);
    if (schema === undefined) throw new VirtfleetError("NOT_FOUND", `no schema "${name}"`, { field: "name" });
    return schema;
  });

  app.post("/ui/validate/:name", async (request) => {
    if (options.principal(request) === undefined) throw new VirtfleetError("UNAUTHENTICATED", "not signed in");
    const name = (request.params as { name: string }).name;
    const schema = schemas[name as keyof typeof schemas];
    if (schema === undefined) throw new VirtfleetError("NOT_FOUND", `no schema "${name}"`, { field: "name" });
    parseOrThrow(schema as z.ZodType, request.body, "");
    return { ok: true };
  });
}

function whoami(p: DashboardPrincipal | undefined) {
  return p === undefined ? {} : { tokenId: p.tokenId, tenant: p.tenant, scopes: [...p.scopes].sort() };
}

/** The session id the request's cookie carries, if any. */
export function sessionCookie(request: FastifyRequest): string | undefined {
  return request.cookies?.[SESSION_COOKIE];
}
