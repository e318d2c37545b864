import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import path from "node:path";
import { ApiServer, TokenStore } from "@virtfleet/server";
import { pino } from "pino";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../fixtures/api-server.js";
import { launchBrowser, type TestBrowser } from "../fixtures/browser.js";
import { repo, startWorker, suiteFleet, tinySpec, until, virsh, type WorkerProcess } from "./harness.js";

// The dashboard in a real browser (Debian's chromium through playwright-core) against a real API, a
// real worker, real Redis and real tiny VMs. Screenshots of each page: test/e2e/output/dashboard/.

const OUTPUT = path.join(repo, "test/e2e/output/dashboard");
const TOKENS = {
  acme: "acme-ui-token-0123456789abcdef",
  acmeRead: "acme-ui-read-0123456789abcdef",
  globex: "globex-ui-token-0123456789abcdef",
  admin: "admin-ui-token-0123456789abcdef",
};
const fleet = suiteFleet();
const tag = randomUUID().slice(0, 6);
const PATTERN = `hu-a${tag}-{n}`;
const VM1 = `hu-a${tag}-1`;
const VM2 = `hu-a${tag}-2`;
const GLOBEX_VM = `hu-g${tag}`;
/** A create that fails on the worker (virt-install: a bridge that does not exist). */
const FAILING_VM = `hu2-f${tag}`;
const NO_BRIDGE = `vfnobr${tag}`;
const ALL = [VM1, VM2, GLOBEX_VM, FAILING_VM];

let server: ApiServer;
let worker: WorkerProcess;
let browser: TestBrowser;
let base: string;

async function gone(name: string, token: string): Promise<boolean> {
  return (
    (await call(base, "GET", `/v1/vms/${name}`, token)).status === 404 && (await virsh(["domstate", name])).code !== 0
  );
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
      {
        id: "acme-rw",
        token: TOKENS.acme,
        scopes: ["vms:read", "vms:write", "hosts:read"],
        tenant: "acme",
        // The failing create's bridge, which does not exist on the host.
        networks: [`bridge=${NO_BRIDGE}`],
      },
      { id: "acme-ro", token: TOKENS.acmeRead, scopes: ["vms:read", "hosts:read"], tenant: "acme" },
      { id: "globex-rw", token: TOKENS.globex, scopes: ["vms:read", "vms:write", "hosts:read"], tenant: "globex" },
      { id: "admin", token: TOKENS.admin, scopes: ["admin"], tenant: "ops" },
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
    [FAILING_VM, TOKENS.acme],
  ] as const)
    if ((await call(base, "GET", `/v1/vms/${name}`, token)).status === 200)
      await call(base, "DELETE", `/v1/vms/${name}`, token);
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
    const g = await call(base, "POST", "/v1/vms", TOKENS.globex, { spec: tinySpec(GLOBEX_VM) });
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

    // An admin watches the Jobs page's live feed while the VMs are created (no reload).
    const adm = await browser.context();
    await signIn(adm.page, TOKENS.admin);
    await adm.page.getByRole("link", { name: "Jobs" }).click();
    await expect.poll(() => adm.page.locator("#feed-h").textContent(), { timeout: 10_000 }).toContain("live");
    let adminLoads = 0;
    adm.page.on("load", () => {
      adminLoads++;
    });
    // A create that fails on the worker, with the command's code and stderr.
    const failing = await call(base, "POST", "/v1/vms", TOKENS.acme, {
      spec: tinySpec(FAILING_VM, { networks: [{ type: "bridge", bridge: NO_BRIDGE }] }),
    });
    expect(failing.status).toBe(202);

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

    // The admin's live feed showed both VMs' events as they happened, without a reload.
    const feedPhases = (vm: string) =>
      adm.page.locator(`.feed li[data-vm="${vm}"]`).evaluateAll((l) => l.map((e) => e.getAttribute("data-phase")));
    await expect.poll(() => feedPhases(VM1), { timeout: 10_000 }).toContain("done");
    expect(await feedPhases(VM1)).toContain("domain.running");
    expect(await feedPhases(VM2)).toContain("done");
    // The failed create is in the failed-jobs list, with its code and the failing command's stderr.
    const failedJob = adm.page.locator(`details.failed[data-job="${String(failing.body.jobId)}"]`);
    await expect.poll(() => failedJob.count(), { timeout: 60_000 }).toBe(1);
    expect(await failedJob.locator("summary").textContent()).toContain("COMMAND_FAILED");
    await failedJob.locator("summary").click();
    expect(await failedJob.textContent()).toContain("virt-install");
    expect(await failedJob.locator("pre.stderr").textContent()).toMatch(/\S/);
    expect(adminLoads).toBe(0);
    await browser.screenshot(adm.page, "jobs");

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
    // (The filter also matches hosts: "-2" alone would match both when the host's random tag starts with 2.)
    await page.getByLabel("Filter").fill(`${tag}-2`);
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
    // Its serial console's last lines: the tiny guest prints VIRTFLEET_READY once booted.
    await expect
      .poll(() => page.locator("pre.console").textContent(), { timeout: 60_000, interval: 1000 })
      .toContain("VIRTFLEET_READY");
    expect(await page.getByTestId("vm-age").textContent()).toMatch(/^\d+[smhd]$/);
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

    // The VM's job history outlives it: a fresh look at its page lists its create and its destroy.
    const history = await call(base, "GET", `/v1/jobs?vm=${VM1}`, TOKENS.acme);
    const jobs = history.body.jobs as { jobId: string; kind: string; phase: string }[];
    expect(jobs.map((j) => [j.kind, j.phase])).toEqual([
      ["destroy", "done"],
      ["create", "done"],
    ]);
    await adm.page.goto(`${base}/ui/#/vms/${VM1}`);
    await expect
      .poll(() => adm.page.locator("details.job").evaluateAll((l) => l.map((e) => e.getAttribute("data-job"))))
      .toEqual(jobs.map((j) => j.jobId).reverse());
    expect(await adm.page.locator("details.job summary").allTextContents()).toEqual([
      expect.stringContaining("create"),
      expect.stringContaining("destroy"),
    ]);

    // Jobs and Labs pages render (screenshots), without globex's VM.
    await page.getByRole("link", { name: "Jobs" }).click();
    await page.getByRole("heading", { name: "Failed jobs" }).waitFor();
    await page.locator(`details.failed[data-job="${String(failing.body.jobId)}"]`).waitFor();
    expect(await page.content()).not.toContain(GLOBEX_VM);
    await page.getByRole("link", { name: "Labs & pools" }).click();
    await page.getByRole("heading", { name: "Pools", exact: true }).waitFor();
    await browser.screenshot(page, "labs");
    expect(loads).toBe(0);

    // An admin drains and undrains the worker's host with the buttons; the API agrees.
    await adm.page.goto(`${base}/ui/#/fleet`);
    const hostCard = adm.page.locator(`li.card[data-host="${worker.hostId}"]`);
    const draining = async () =>
      (
        (await call(base, "GET", "/v1/hosts", TOKENS.admin)).body as unknown as { hostId: string; draining: boolean }[]
      ).find((h) => h.hostId === worker.hostId)?.draining;
    await hostCard.getByRole("button", { name: `Drain ${worker.hostId}` }).click();
    await expect.poll(() => hostCard.locator("h2 .pill").textContent()).toBe("draining");
    expect(await draining()).toBe(true);
    await browser.screenshot(adm.page, "fleet-draining");
    await hostCard.getByRole("button", { name: `Undrain ${worker.hostId}` }).click();
    await expect.poll(() => hostCard.locator("h2 .pill").textContent()).toBe("up");
    expect(await draining()).toBe(false);

    // bull-board at /ui/queues: the admin's session cookie opens it, with the host's queue.
    const board = await adm.page.goto(`${base}/ui/queues`);
    expect(board?.status()).toBe(200);
    await adm.page.getByText(`host.${worker.hostId}`).first().waitFor({ timeout: 15_000 });
    await browser.screenshot(adm.page, "queues");

    // A read-only token: the VM page has no destroy button (and no create form).
    const ro = await browser.context();
    await signIn(ro.page, TOKENS.acmeRead);
    await ro.page.goto(`${base}/ui/#/vms/${VM2}`);
    await ro.page
      .getByTestId("vm-state")
      .waitFor()
      .catch(async (error: Error) => {
        // What the page showed instead (a CI run once timed out here): its address and text.
        throw new Error(`${error.message}\nat ${ro.page.url()}: ${await ro.page.locator("body").textContent()}`);
      });
    await expect.poll(() => ro.page.getByTestId("vm-state").textContent()).toBe("running");
    expect(await ro.page.getByRole("button", { name: "Destroy" }).count()).toBe(0);
    await browser.screenshot(ro.page, "vm-read-only");
    await ro.page.getByRole("link", { name: "Create" }).click();
    await ro.page.getByText("This token may not create VMs").waitFor();
    // …and a non-admin session is refused bull-board.
    expect((await ro.page.goto(`${base}/ui/queues`))?.status()).toBe(403);

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
