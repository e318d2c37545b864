import type { ErrorCode, Problem } from "@virtfleet/core";

/**
 * An error answer of the virtfleet API: the server's RFC 9457 problem details, parsed.
 *
 * Also raised, with code `INTERNAL`, when the server's answer cannot be understood (a non-problem
 * error body, or a success body that does not match its schema); `problem` is then synthesized.
 */
export class ApiError extends Error {
  override readonly name = "ApiError";
  /** The HTTP status of the answer. */
  readonly status: number;
  /** virtfleet's stable error code. */
  readonly code: ErrorCode;
  /** The input field at fault, as a dotted path (`spec.disks.0.sizeGiB`), when the server named one. */
  readonly field: string | undefined;
  /** The problem details, as sent by the server (or synthesized when it sent none). */
  readonly problem: Problem;

  /**
   * @param problem the parsed problem details.
   * @param options.cause the underlying error, if any (e.g. a schema mismatch).
   */
  constructor(problem: Problem, options: { cause?: unknown } = {}) {
    super(
      problem.detail === undefined ? `${problem.title} (${problem.code})` : `${problem.code}: ${problem.detail}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.status = problem.status;
    this.code = problem.code;
    this.field = problem.field;
    this.problem = problem;
  }
}
