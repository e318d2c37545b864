import { z } from "zod";
import { ErrorCode } from "./errors.js";
import { JobKind, Phase } from "./events.js";
import { JobId, VmName } from "./names.js";

/** Lines of a VM's serial console `GET /v1/vms/{name}/console` answers when `lines` is not given. */
export const DEFAULT_CONSOLE_LINES = 50;
/** The most lines of a serial console one request may ask for. */
export const MAX_CONSOLE_LINES = 500;
/** How many bytes from the end of a console file a worker reads at most (enough for MAX_CONSOLE_LINES). */
export const CONSOLE_TAIL_BYTES = 256 * 1024;

/** `GET /v1/vms/{name}/console` query. */
export const ConsoleQuery = z
  .object({
    lines: z.coerce.number().int().min(1).max(MAX_CONSOLE_LINES).default(DEFAULT_CONSOLE_LINES),
  })
  .strict();

/** The last lines of a VM's serial console, as its host's worker read them. */
export const ConsoleView = z.object({
  vm: VmName,
  host: z.string(),
  lines: z.array(z.string()),
  /** When the console file was last written (its mtime), ISO 8601. */
  updatedAt: z.string(),
});
export type ConsoleView = z.infer<typeof ConsoleView>;

/** A request to a host's worker for the tail of one VM's console, sent over Redis pub/sub. */
export const ConsoleRequest = z.object({
  id: JobId,
  vm: VmName,
  lines: z.number().int().min(1).max(MAX_CONSOLE_LINES),
});
export type ConsoleRequest = z.infer<typeof ConsoleRequest>;

/** A worker's answer to a console request: the lines and the file's mtime, or why not. */
export const ConsoleResult = z.object({
  lines: z.array(z.string()).optional(),
  updatedAt: z.string().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type ConsoleResult = z.infer<typeof ConsoleResult>;

/** Failed jobs `GET /v1/jobs` answers when `limit` is not given, and the most it answers. */
export const DEFAULT_JOBS_LIMIT = 50;
export const MAX_JOBS_LIMIT = 500;

/**
 * `GET /v1/jobs` query: `state=failed` (recent failed jobs) or `vm=NAME` (every job of that VM still
 * in the all-events stream); exactly one of them.
 */
export const ListJobsQuery = z
  .object({
    state: z.literal("failed").optional(),
    vm: VmName.optional(),
    limit: z.coerce.number().int().min(1).max(MAX_JOBS_LIMIT).default(DEFAULT_JOBS_LIMIT),
  })
  .strict();
export type ListJobsQuery = z.infer<typeof ListJobsQuery>;

/** A failed job: what failed, with the failing command and its stderr when a command failed. */
export const FailedJobView = z.object({
  jobId: JobId,
  vm: VmName,
  kind: JobKind,
  code: ErrorCode,
  message: z.string(),
  command: z.array(z.string()).optional(),
  exitCode: z.number().optional(),
  stderr: z.string().optional(),
  host: z.string().optional(),
  /** When the job failed (its `failed` event), ISO 8601. */
  at: z.string(),
});
export type FailedJobView = z.infer<typeof FailedJobView>;

export const FailedJobsView = z.object({ jobs: z.array(FailedJobView) });
export type FailedJobsView = z.infer<typeof FailedJobsView>;

/** One job of a VM (`GET /v1/jobs?vm=NAME`): its kind, its latest phase, and its error when it failed. */
export const VmJobView = z.object({
  jobId: JobId,
  vm: VmName,
  kind: JobKind,
  /** The job's latest phase (`done`, `failed`, `cancelled` when it ended). */
  phase: Phase,
  message: z.string(),
  code: ErrorCode.optional(),
  command: z.array(z.string()).optional(),
  exitCode: z.number().optional(),
  stderr: z.string().optional(),
  host: z.string().optional(),
  /** When the job's latest event happened, ISO 8601. */
  at: z.string(),
});
export type VmJobView = z.infer<typeof VmJobView>;

export const VmJobsView = z.object({ jobs: z.array(VmJobView) });
export type VmJobsView = z.infer<typeof VmJobsView>;
