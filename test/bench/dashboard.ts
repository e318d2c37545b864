/**
 * 9. The dashboard in a real browser (Debian's chromium through playwright-core): the first render of
 * the VM table with 10,000 simulated VM records (from the VMs page's mount to the first painted frame
 * with rows: fetch, parse, sort and the virtualized render), and the delay from a worker's event (the
 * event appended to Redis as a worker does) to the VM page's event handler (the page's live stream).
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { EventLog, Keys } from "@virtfleet/fleet";
import { Redis } from "ioredis";
import { startApi } from "../fixtures/api-server.js";
import { launchBrowser } from "../fixtures/browser.js";
import { SEEDED_CREATE_PHASES } from "../fixtures/phases.js";

const TOKEN = "bench-dashboard-token-0123456789";
const ROWS = 10_000;
/** What a predicate run in the page uses of it (this file is typed for Node, without the DOM's types). */
type PageGlobals = { document: { querySelectorAll(selector: string): { length: number } } };
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

export interface DashboardFigures {
  vmTable10kFirstRenderMs: number;
  eventToPageMs: number;
  eventToPageMaxMs: number;
  events: number;
}

function simulatedVms(n: number) {
  const states = ["running", "running", "running", "stopped", "creating", "failed"];
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => ({
    name: `sim-${String(i).padStart(5, "0")}`,
    hostId: `host-${i % 50}`,
    state: states[i % states.length],
    jobId: `create-${randomUUID()}`,
    memoryMiB: 512 * (1 + (i % 8)),
    vcpus: 1 + (i % 4),
    labels: { team: `t${i % 12}`, course: i % 3 === 0 ? "net101" : "os202" },
    addresses: [`192.0.2.${i % 250}`],
    updatedAt: new Date(now - i * 1000).toISOString(),
  }));
}

export async function dashboardBench(redisUrl: string): Promise<DashboardFigures> {
  const prefix = `bench-ui-${randomUUID().slice(0, 8)}`;
  const api = await startApi(redisUrl, prefix, [
    { id: "bench", token: TOKEN, scopes: ["vms:read", "vms:write", "hosts:read"], tenant: "bench" },
  ]);
  const browser = await launchBrowser(path.join(os.tmpdir(), `virtfleet-bench-ui-${process.pid}`));
  const redis = new Redis(redisUrl);
  try {
    const { page, context } = await browser.context();
    await page.goto(`${api.base}/ui/`);
    await page.getByLabel("API token").fill(TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByTestId("who").waitFor();

    // 10,000 simulated VMs: the API's list answer replaced in the browser (the page does the rest).
    const body = JSON.stringify(simulatedVms(ROWS));
    await context.route(/\/v1\/vms$/, (route) => route.fulfill({ status: 200, contentType: "application/json", body }));
    await page.goto(`${api.base}/ui/#/vms`);
    await page.waitForFunction(() => performance.getEntriesByName("vms:rendered").length > 0, undefined, {
      timeout: 60_000,
    });
    const firstRender = await page.evaluate(() => {
      const mount = performance.getEntriesByName("vms:mount")[0]?.startTime ?? 0;
      return (performance.getEntriesByName("vms:rendered")[0]?.startTime ?? 0) - mount;
    });
    await context.unroute(/\/v1\/vms$/);

    // A worker's events to the VM page: appended to the job's stream as HostAgent does.
    const name = `bench-ui-${randomUUID().slice(0, 6)}`;
    const created = await fetch(`${api.base}/v1/vms`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ spec: { name, memoryMiB: 128, vcpus: 1, disks: [{ sizeGiB: 1 }] } }),
    }).then((r) => r.json() as Promise<{ jobId: string }>);
    await page.goto(`${api.base}/ui/#/vms/${name}`);
    const phases = page.locator(`details.job[data-job="${created.jobId}"] li[data-phase]`);
    await phases.first().waitFor();
    const log = new EventLog(redis, new Keys(prefix));
    const delays: number[] = [];
    for (const phase of SEEDED_CREATE_PHASES) {
      const before = await phases.count();
      const sent = Date.now();
      await log.append({ jobId: created.jobId, kind: "create", vm: name, phase, message: "bench", host: "h1" });
      // A function, not a string: the page's CSP forbids eval, which a string predicate needs.
      await page.waitForFunction(
        ([jobId, n]) =>
          (globalThis as unknown as PageGlobals).document.querySelectorAll(
            `details.job[data-job="${jobId}"] li[data-phase]`,
          ).length > Number(n),
        [created.jobId, before] as const,
      );
      const received = Number(await phases.nth(before).getAttribute("data-received-at"));
      delays.push(received - sent);
    }
    delays.sort((a, b) => a - b);
    // Leave the page first: its live streams end before the API closes.
    await page.goto("about:blank");
    await context.close();
    if (browser.offHost().length > 0) throw new Error(`requests left loopback: ${browser.offHost().join(", ")}`);
    return {
      vmTable10kFirstRenderMs: round(firstRender),
      eventToPageMs: round(delays[Math.floor(delays.length / 2)] as number),
      eventToPageMaxMs: round(delays.at(-1) as number),
      events: delays.length,
    };
  } finally {
    redis.disconnect();
    await browser.close();
    await api.close();
  }
}
