import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import path from "node:path";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { pino } from "pino";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { launchBrowser, type TestBrowser } from "../fixtures/browser.js";
import { type FleetEnv, repo, startWorker, tinySpec, until, virsh, type WorkerProcess } from "./harness.js";

// The dashboard in a real browser (Debian's chromium through playwright-core) against a real API, a
// real worker, real Redis and real tiny VMs. Screenshots of each page: test/e2e/output/dashboard/.

const OUTPUT = path.join(repo, "test/e2e/output/dashboard");
const TOKENS = {
  acme: "acme-ui-token-0123456789abcdef",
  acmeRead: "acme-ui-read-0123456789abcdef",
  globex: "globex-ui-token-0123456789abcdef",
};
const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
const tag = randomUUID().slice(0, 6);
const PATTERN = `hu-a${tag}-{n}`;
const VM1 = `hu-a${tag}-1`;
const VM2 = `hu-a${tag}-2`;
const GLOBEX_VM = `hu-g${tag}`;
const ALL = [VM1, VM2, GLOBEX_VM];

let server: ApiServer;
let worker: WorkerProcess;
let browser: TestBrowser;
let base: string;

async function call(method: string, p: string, token: string, body?: unknown) {
  const res = await fetch(base + p, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> };
}

async function gone(name: string, token: string): Promise<boolean> {
  return (await call("GET", `/v1/vms/${name}`, token)).status === 404 && (await virsh(["domstate", name])).code !== 0;
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto(`${base}/ui/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByTestId("who").waitFor();
}

beforeAll(async () => {
  server = new ApiServer({
    redisUrl: fleet.redisUrl,
    prefix: fleet.prefix,
    tokens: new TokenStore([
      { id: "acme-rw", token: TOKENS.acme, scopes: ["vms:read", "vms:write", "hosts:read"], tenant: "acme" },
      { id: "acme-ro", token: TOKENS.acmeRead, scopes: ["vms:read", "hosts:read"], tenant: "acme" },
      { id: "globex-rw", token: TOKENS.globex, scopes: ["vms:read", "vms:write", "hosts:read"], tenant: "globex" },
    ]),
    logger: pino({ level: "warn" }),
    host: "127.0.0.1",
    port: 0,
  });
  await server.start();
  base = server.url;
  worker = await startWorker(fleet, { hostId: `hu-host-${tag}` });
  browser = await launchBrowser(OUTPUT);
});

afterAll(async () => {
  await browser?.close();
  // Whatever the test left: destroyed through the API, then by force.
  for (const [name, token] of [
    [VM1, TOKENS.acme],
    [VM2, TOKENS.acme],
    [GLOBEX_VM, TOKENS.globex],
  ] as const)
    if ((await call("GET", `/v1/vms/${name}`, token)).status === 200) await call("DELETE", `/v1/vms/${name}`, token);
  await until(
    "the test's VMs gone",
    async () => ((await Promise.all(ALL.map((n) => gone(n, TOKENS.acme)))).every(Boolean) ? true : undefined),
    90_000,
  ).catch(() => undefined);
  for (const name of ALL) {
    await virsh(["destroy", name]);
    await virsh(["undefine", name, "--nvram"]);
  }
  await worker?.stop();
  await server?.close();
  if (worker !== undefined) await rm(worker.storageDir, { recursive: true, force: true });
}, 150_000);

describe("dashboard in a real browser", () => {
  it("signs in, creates two tiny VMs from the form and watches their phases live, sees them on their host, destroys one; a read-only token gets no destroy button; another tenant's VMs never appear; nothing leaves loopback", async () => {
    // Another tenant's VM, which acme's pages must never show.
    const g = await call("POST", "/v1/vms", TOKENS.globex, { spec: tinySpec(GLOBEX_VM) });
    expect(g.status).toBe(202);

    const { page } = await browser.context();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/ui/`);
    await page.getByLabel("API token").waitFor();
    await browser.screenshot(page, "signin");
    await page.getByLabel("API token").fill("not-a-token-0123456789");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("Unknown token");
    await page.getByLabel("API token").fill(TOKENS.acme);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByTestId("who").waitFor();
    // The token is never kept by the page: only an HttpOnly cookie.
    expect(
      await page.evaluate<string>("JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })"),
    ).not.toContain(TOKENS.acme);
    expect(await page.evaluate<string>("document.cookie")).toBe("");
    let loads = 0;
    page.on("load", () => {
      loads++;
    });

    // Create: the form, as a batch of two tiny VMs.
    await page.getByRole("link", { name: "Create" }).click();
    await page.getByLabel("Count").fill("2");
    await page.getByLabel("Name pattern (with {n})").fill(PATTERN);
    await page.getByLabel("Memory (MiB)").fill("192");
    await page.getByLabel("vCPUs").fill("1");
    await page.getByLabel("Disk (GiB)").fill("1");
    await page.getByLabel("Disk backing image (optional)").fill("tiny");
    await page.getByLabel("Method").selectOption("kernel");
    await page.getByLabel("Kernel image").fill("tiny");
    await page.getByLabel("Initrd image").fill("tiny");
    await page.getByLabel("Kernel arguments").fill("console=ttyS0");
    await page.getByLabel("Virtualization").selectOption("qemu");
    // The copy-as-CLI text is the same request.
    expect(await page.locator("#cli-text").inputValue()).toContain(`--count 2`);
    await page.getByRole("button", { name: "Create", exact: true }).click();

    // Phases arrive live: the bars' phases change with no reload, until both are done.
    const seen = new Set<string>();
    const bars = page.locator(".batch .bars li");
    const deadline = Date.now() + 150_000;
    for (;;) {
      const phases = await bars.evaluateAll((els) =>
        els.map((e) => `${e.getAttribute("data-vm")}:${e.getAttribute("data-phase")}`),
      );
      for (const p of phases) seen.add(p);
      if (phases.length === 2 && phases.every((p) => p.endsWith(":done"))) break;
      if (phases.some((p) => p.endsWith(":failed")))
        throw new Error(`a create failed: ${phases.join(", ")}\n${worker.logs()}`);
      if (Date.now() > deadline) throw new Error(`not done in time: ${phases.join(", ")}`);
      if ([...seen].some((p) => p.endsWith(":domain.running"))) await browser.screenshot(page, "create");
      await page.waitForTimeout(100);
    }
    const phasesOf = (vm: string) => [...seen].filter((p) => p.startsWith(`${vm}:`)).map((p) => p.split(":")[1]);
    // More than the first and last answer: phases in between were shown as they happened.
    expect(phasesOf(VM1).filter((p) => p !== "queued" && p !== "done").length).toBeGreaterThan(0);
    expect(phasesOf(VM2).filter((p) => p !== "queued" && p !== "done").length).toBeGreaterThan(0);
    expect(loads).toBe(0);
    await browser.screenshot(page, "create");

    // Fleet: both VMs on the worker's host card.
    await page.getByRole("link", { name: "Fleet" }).click();
    const card = page.locator(`li.card[data-host="${worker.hostId}"]`);
    await expect.poll(() => card.textContent(), { timeout: 10_000 }).toContain(VM1);
    expect(await card.textContent()).toContain(VM2);
    expect(await page.content()).not.toContain(GLOBEX_VM);
    await browser.screenshot(page, "fleet");

    // VMs: the table shows both, running, on the worker's host; never globex's.
    await page.getByRole("link", { name: "VMs" }).click();
    const row1 = page.locator(`.vrow[data-vm="${VM1}"]`);
    await expect.poll(() => row1.textContent(), { timeout: 10_000 }).toContain("running");
    expect(await row1.textContent()).toContain(worker.hostId);
    await expect.poll(() => page.locator(`.vrow[data-vm="${VM2}"]`).count()).toBe(1);
    expect(await page.content()).not.toContain(GLOBEX_VM);
    await page.getByLabel("Filter").fill("-2");
    await expect.poll(() => page.locator(".vbody .vrow").count()).toBe(1);
    await page.getByLabel("Filter").fill("");
    await browser.screenshot(page, "vms");

    // VM page: its create's phases as a timeline; destroy it.
    await row1.getByRole("link", { name: VM1 }).click();
    await expect
      .poll(() =>
        page.locator(".timeline li[data-phase]").evaluateAll((l) => l.map((e) => e.getAttribute("data-phase"))),
      )
      .toContain("done");
    await browser.screenshot(page, "vm");
    await page.getByRole("button", { name: "Destroy" }).click();
    await page.getByRole("button", { name: "Yes, destroy" }).click();
    await page.getByTestId("vm-gone").waitFor({ timeout: 90_000 });
    await expect
      .poll(
        () =>
          page
            .locator("details.job")
            .last()
            .locator("li[data-phase]")
            .evaluateAll((l) => l.map((e) => e.getAttribute("data-phase"))),
        { timeout: 30_000 },
      )
      .toContain("done");
    await until("VM1's domain gone", async () => ((await gone(VM1, TOKENS.acme)) ? true : undefined), 60_000);
    await browser.screenshot(page, "vm-destroyed");

    // Jobs and Labs pages render (screenshots), without globex's VM.
    await page.getByRole("link", { name: "Jobs" }).click();
    await page.getByRole("heading", { name: "Failed jobs" }).waitFor();
    expect(await page.content()).not.toContain(GLOBEX_VM);
    await browser.screenshot(page, "jobs");
    await page.getByRole("link", { name: "Labs & pools" }).click();
    await page.getByRole("heading", { name: "Pools", exact: true }).waitFor();
    await browser.screenshot(page, "labs");
    expect(loads).toBe(0);

    // A read-only token: the VM page has no destroy button (and no create form).
    const ro = await browser.context();
    await signIn(ro.page, TOKENS.acmeRead);
    await ro.page.goto(`${base}/ui/#/vms/${VM2}`);
    await ro.page.getByTestId("vm-state").waitFor();
    await expect.poll(() => ro.page.getByTestId("vm-state").textContent()).toBe("running");
    expect(await ro.page.getByRole("button", { name: "Destroy" }).count()).toBe(0);
    await browser.screenshot(ro.page, "vm-read-only");
    await ro.page.getByRole("link", { name: "Create" }).click();
    await ro.page.getByText("This token may not create VMs").waitFor();

    // Signing out ends the session: the API refuses the cookie afterwards.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API token").waitFor();
    const status = await page.evaluate(async () => (await fetch("/v1/vms")).status);
    expect(status).toBe(401);

    expect(errors).toEqual([]);
    expect(browser.requests.length).toBeGreaterThan(10);
    expect(browser.offHost()).toEqual([]);
  });
});
