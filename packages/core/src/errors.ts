import { z } from "zod";

/** Stable error codes: part of the public contract (failed events, API answers, CLI --json). */
export const ErrorCode = z.enum([
  "INVALID_SPEC",
  "IMAGE_NOT_FOUND",
  "IMAGE_CHECKSUM_MISMATCH",
  "NAME_CLASH",
  "VM_NOT_FOUND",
  "JOB_NOT_FOUND",
  "NO_CAPACITY",
  "HOST_NOT_FOUND",
  "HOST_LOST",
  "COMMAND_FAILED",
  "COMMAND_TIMEOUT",
  "PHASE_TIMEOUT",
  "GUEST_TIMEOUT",
  "GUEST_FAILED",
  "LIBVIRT_UNAVAILABLE",
  "REDIS_UNAVAILABLE",
  /** Fewer Redis replicas than REDIS_MIN_REPLICAS confirmed an acknowledged write in time (retryable). */
  "REPLICATION_TIMEOUT",
  "OUT_OF_DISK",
  "CANCELLED",
  "QUOTA_EXCEEDED",
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "RATE_LIMITED",
  "PAYLOAD_TOO_LARGE",
  /** A pool had no ready VM to hand over within the claim's wait. */
  "POOL_EMPTY",
  /** The VM exists but is not running (e.g. its console was asked for while it is being created). */
  "VM_NOT_RUNNING",
  /** A host's worker did not answer a request through Redis in time. */
  "HOST_TIMEOUT",
  "INTERNAL",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/**
 * Codes that a retry cannot fix: the job fails at once. A command that ran and failed is permanent
 * (bad arguments, a broken image) unless it is classified as LIBVIRT_UNAVAILABLE or timed out.
 */
const PERMANENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "COMMAND_FAILED",
  "INVALID_SPEC",
  "IMAGE_NOT_FOUND",
  "IMAGE_CHECKSUM_MISMATCH",
  "NAME_CLASH",
  "VM_NOT_FOUND",
  "JOB_NOT_FOUND",
  "NO_CAPACITY",
  "HOST_NOT_FOUND",
  "OUT_OF_DISK",
  "CANCELLED",
  "GUEST_TIMEOUT",
  "GUEST_FAILED",
  "QUOTA_EXCEEDED",
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "IDEMPOTENCY_CONFLICT",
  "PAYLOAD_TOO_LARGE",
]);

export function isPermanent(code: ErrorCode): boolean {
  return PERMANENT.has(code);
}

export const ErrorInfo = z.object({
  code: ErrorCode,
  message: z.string(),
  /** The input field at fault, as a dotted path (`spec.disks.0.sizeGiB`). */
  field: z.string().optional(),
  /** The failing command's argv. */
  command: z.array(z.string()).optional(),
  exitCode: z.number().optional(),
  stderr: z.string().optional(),
});
export type ErrorInfo = z.infer<typeof ErrorInfo>;

export interface VirtfleetErrorOptions {
  field?: string;
  command?: readonly string[];
  exitCode?: number;
  stderr?: string;
  cause?: unknown;
  /** Overrides the code's default: whether a retry may help. */
  retryable?: boolean;
}

/** The base of every error virtfleet raises on purpose. */
export class VirtfleetError extends Error {
  override readonly name: string = "VirtfleetError";
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly field: string | undefined;
  readonly command: readonly string[] | undefined;
  readonly exitCode: number | undefined;
  readonly stderr: string | undefined;

  constructor(code: ErrorCode, message: string, options: VirtfleetErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? !isPermanent(code);
    this.field = options.field;
    this.command = options.command;
    this.exitCode = options.exitCode;
    this.stderr = options.stderr;
  }

  toInfo(): ErrorInfo {
    return {
      code: this.code,
      message: this.message,
      ...(this.field === undefined ? {} : { field: this.field }),
      ...(this.command === undefined ? {} : { command: [...this.command] }),
      ...(this.exitCode === undefined ? {} : { exitCode: this.exitCode }),
      ...(this.stderr === undefined ? {} : { stderr: this.stderr }),
    };
  }
}

/** Bad input: names the field; never retried, nothing runs. */
export class ValidationError extends VirtfleetError {
  override readonly name = "ValidationError";
  readonly issues: readonly { field: string; message: string }[];

  constructor(issues: readonly { field: string; message: string }[]) {
    const first = issues[0];
    super("INVALID_SPEC", issues.map((i) => `${i.field}: ${i.message}`).join("; ") || "invalid input", {
      ...(first ? { field: first.field } : {}),
    });
    this.issues = issues;
  }
}

/** Turns a zod error into a ValidationError whose fields are dotted paths under `prefix`. */
export function toValidationError(error: z.ZodError, prefix = ""): ValidationError {
  return new ValidationError(
    error.issues.map((issue) => ({
      field: [prefix, ...issue.path.map(String)].filter((p) => p !== "").join(".") || "(root)",
      message: issue.message,
    })),
  );
}

/** Parses `input` with `schema`, throwing a ValidationError that names the field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, prefix = ""): z.infer<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw toValidationError(result.error, prefix);
  return result.data;
}

/** Any thrown value as an ErrorInfo, for events and answers. */
export function toErrorInfo(error: unknown): ErrorInfo {
  if (error instanceof VirtfleetError) return error.toInfo();
  const message = error instanceof Error ? error.message : String(error);
  return { code: "INTERNAL", message };
}
