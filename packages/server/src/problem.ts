import { type ErrorCode, type Problem, toErrorInfo, ValidationError, VirtfleetError } from "@virtfleet/core";

/** The HTTP status of each error code. */
export const STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_SPEC: 400,
  IMAGE_NOT_FOUND: 422,
  IMAGE_CHECKSUM_MISMATCH: 422,
  NAME_CLASH: 409,
  VM_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  NOT_FOUND: 404,
  NO_CAPACITY: 409,
  HOST_NOT_FOUND: 422,
  HOST_LOST: 502,
  COMMAND_FAILED: 502,
  COMMAND_TIMEOUT: 504,
  PHASE_TIMEOUT: 504,
  GUEST_TIMEOUT: 504,
  GUEST_FAILED: 502,
  LIBVIRT_UNAVAILABLE: 503,
  REDIS_UNAVAILABLE: 503,
  REPLICATION_TIMEOUT: 503,
  OUT_OF_DISK: 507,
  CANCELLED: 409,
  QUOTA_EXCEEDED: 403,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  IDEMPOTENCY_CONFLICT: 409,
  RATE_LIMITED: 429,
  POOL_EMPTY: 503,
  VM_NOT_RUNNING: 409,
  HOST_TIMEOUT: 504,
  PAYLOAD_TOO_LARGE: 413,
  INTERNAL: 500,
};

const TITLES: Partial<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  504: "Gateway Timeout",
};

/** An error turned into RFC 9457 problem details. */
export function toProblem(error: unknown): Problem {
  const info = toErrorInfo(error);
  const status = STATUS[info.code];
  return {
    type: `https://virtfleet.dev/problems/${info.code.toLowerCase().replaceAll("_", "-")}`,
    title: TITLES[status] ?? "Error",
    status,
    code: info.code,
    detail: info.message,
    ...(info.field === undefined ? {} : { field: info.field }),
    ...(error instanceof ValidationError ? { issues: [...error.issues] } : {}),
  };
}

export function problem(code: ErrorCode, message: string, field?: string): VirtfleetError {
  return new VirtfleetError(code, message, field === undefined ? {} : { field });
}
