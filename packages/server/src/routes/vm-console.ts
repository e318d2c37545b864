import { ConsoleQuery, ConsoleView, parseOrThrow, VmName } from "@virtfleet/core";
import type { ConsoleClient, VmRegistry } from "@virtfleet/fleet";
import type { FastifyInstance } from "fastify";
import { canSee } from "../auth.js";
import type { RouteDoc } from "../openapi.js";
import { problem } from "../problem.js";
import type { RouteContext } from "./route-context.js";

export const CONSOLE_ROUTES: readonly RouteDoc[] = [
  {
    method: "get",
    path: "/v1/vms/{name}/console",
    summary:
      "The last lines of a running VM's serial console (`lines`: default 50, at most 500), read by its host's worker",
    scope: "vms:read",
    query: ConsoleQuery,
    status: 200,
    response: ConsoleView,
    errors: {
      "409": "VM_NOT_RUNNING: the VM is not running (being created, destroyed, or failed)",
      "504": "HOST_TIMEOUT: the VM's host did not answer in time (its worker is down or busy)",
    },
  },
];

/** `GET /v1/vms/{name}/console?lines=N`: asks the VM's host's worker for the tail of its console file. */
export function registerConsoleRoutes(
  app: FastifyInstance,
  ctx: RouteContext,
  deps: { vms: VmRegistry; console: ConsoleClient; timeoutMs?: number },
): void {
  app.get("/v1/vms/:name/console", async (request) => {
    const p = ctx.principal(request, "vms:read");
    const name = parseOrThrow(VmName, (request.params as { name: string }).name, "name");
    const q = parseOrThrow(ConsoleQuery, request.query, "query");
    const vm = await deps.vms.get(name);
    if (vm === undefined || !canSee(p, vm.tenant)) throw problem("VM_NOT_FOUND", `no VM "${name}"`, "name");
    if (vm.state !== "running" || vm.hostId === "")
      throw problem("VM_NOT_RUNNING", `VM "${name}" is ${vm.state}; only a running VM's console is read`, "name");
    const tail = await deps.console.tail(vm.hostId, name, q.lines, deps.timeoutMs);
    return { vm: name, host: vm.hostId, lines: tail.lines, updatedAt: tail.updatedAt };
  });
}
