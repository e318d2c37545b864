import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import type { FleetClient } from "@virtfleet/fleet";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { type Principal, requireScope } from "../auth.js";
import { toProblem } from "../problem.js";

/** Where bull-board is mounted. */
export const QUEUES_BOARD_PATH = "/ui/queues";
/** How long the board's list of host queues is trusted before the hosts are read again (ms). */
export const QUEUES_BOARD_REFRESH_MS = 2_000;

/**
 * The only page bull-board's template loads from outside the host (a web font); dropped so the
 * board works on an air-gapped host. Its own scripts and styles are served from @bull-board/ui.
 */
const EXTERNAL_FONT = /<link[^>]+href="https:\/\/fonts\.googleapis\.com[^>]*>/g;
/** No request of the board's page may leave the host. */
const CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:";

export interface QueuesBoardOptions {
  fleet: FleetClient;
  /** The caller of a request, as the /v1 routes resolve it (UNAUTHENTICATED when there is none). */
  authenticate(request: FastifyRequest): Principal;
  refreshMs?: number;
}

/**
 * bull-board at /ui/queues for `admin` tokens only (401 without credentials, 403 without admin),
 * over every host's BullMQ queue (`host.<id>`, the fleet's prefix). Hosts that join later appear:
 * the host list is read again at most every `refreshMs` when the board is used. Read-only: a job
 * retried or removed behind virtfleet's back would no longer match its record and its admission.
 */
export async function registerQueuesBoard(app: FastifyInstance, options: QueuesBoardOptions): Promise<void> {
  const { fleet } = options;
  const refreshMs = options.refreshMs ?? QUEUES_BOARD_REFRESH_MS;
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUES_BOARD_PATH);
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: "virtfleet queues" } },
  });
  const shown = new Set<string>();
  let checkedAt = 0;
  let refreshing: Promise<void> | undefined;
  const refresh = async (): Promise<void> => {
    const ids = new Set((await fleet.hosts.list()).map((h) => h.status.hostId));
    for (const id of ids) {
      if (shown.has(id)) continue;
      board.addQueue(new BullMQAdapter(fleet.hostQueue(id) as never, { readOnlyMode: true }));
      shown.add(id);
    }
    for (const id of shown) {
      if (ids.has(id)) continue;
      board.removeQueue(fleet.keys.hostQueue(id));
      shown.delete(id);
    }
    checkedAt = Date.now();
  };

  await app.register(async (scope) => {
    scope.addHook("onRequest", async (request, reply) => {
      // Answered here: bull-board's own error handler would make a refusal a 500.
      try {
        const p = options.authenticate(request);
        requireScope(p, "admin");
        request.principal = p;
      } catch (error) {
        const p = toProblem(error);
        request.problemCode = p.code;
        return reply.status(p.status).type("application/problem+json").send(p);
      }
      if (Date.now() - checkedAt >= refreshMs) {
        refreshing ??= refresh().finally(() => {
          refreshing = undefined;
        });
        await refreshing;
      }
    });
    scope.addHook("onSend", async (_request, reply, payload) => {
      void reply.header("content-security-policy", CSP);
      return typeof payload === "string" && String(reply.getHeader("content-type")).startsWith("text/html")
        ? payload.replace(EXTERNAL_FONT, "")
        : payload;
    });
    await scope.register(serverAdapter.registerPlugin() as never, { prefix: QUEUES_BOARD_PATH });
  });
}
