import { existsSync } from "node:fs";
import { VirtfleetError } from "@virtfleet/core";
import { execa } from "execa";

/** The little a runner needs from a logger; pino's fits. */
export interface RunnerLogger {
  debug(obj: object, msg?: string): void;
}

export interface RunOptions {
  /** Kill the command after this long; the error's code is COMMAND_TIMEOUT. */
  timeoutMs?: number;
  /** Aborting kills the command; the error's code is CANCELLED. */
  signal?: AbortSignal;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs one program with an argv array, never through a shell. */
export interface CommandRunner {
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

export interface ExecaRunnerOptions {
  logger?: RunnerLogger;
  /** Default timeout for every command. Default 120 s. */
  defaultTimeoutMs?: number;
  /**
   * Start each command through `setpriv --pdeathsig KILL`, so it dies with the worker: a worker
   * killed with SIGKILL leaves no virt-install running on that would race the job's next run.
   * Default: on when /usr/bin/setpriv exists.
   */
  dieWithParent?: boolean;
}

const SETPRIV = "/usr/bin/setpriv";

/** Classifies a failed command by what it printed. */
export function classifyFailure(stderr: string): "LIBVIRT_UNAVAILABLE" | "OUT_OF_DISK" | "COMMAND_FAILED" {
  if (/No space left on device|ENOSPC/i.test(stderr)) return "OUT_OF_DISK";
  if (
    /Failed to connect socket|failed to connect to the hypervisor|Cannot recv data|End of file while reading data|Timed out during operation: cannot acquire state change lock|Guest name '[^']*' is already in use/i.test(
      stderr,
    )
  ) {
    return "LIBVIRT_UNAVAILABLE";
  }
  return "COMMAND_FAILED";
}

const STDERR_LIMIT = 8192;

export class ExecaRunner implements CommandRunner {
  readonly #logger: RunnerLogger | undefined;
  readonly #defaultTimeoutMs: number;
  readonly #dieWithParent: boolean;

  constructor(options: ExecaRunnerOptions = {}) {
    this.#logger = options.logger;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 120_000;
    this.#dieWithParent = options.dieWithParent ?? existsSync(SETPRIV);
  }

  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const command = [file, ...args];
    const timeoutMs = options.timeoutMs ?? this.#defaultTimeoutMs;
    this.#logger?.debug({ argv: command, timeoutMs }, "run");
    if (options.signal?.aborted) {
      throw new VirtfleetError("CANCELLED", `${file} not started: cancelled`, { command });
    }
    const started = Date.now();
    const [bin, argv] = this.#dieWithParent ? [SETPRIV, ["--pdeathsig", "KILL", "--", file, ...args]] : [file, args];
    const result = await execa(bin, argv, {
      timeout: timeoutMs,
      ...(options.signal === undefined ? {} : { cancelSignal: options.signal }),
      reject: false,
      stdin: "ignore",
      forceKillAfterDelay: 3000,
      env: { LC_ALL: "C" },
    });
    const stderr = String(result.stderr ?? "").slice(-STDERR_LIMIT);
    this.#logger?.debug({ argv: command, exitCode: result.exitCode, ms: Date.now() - started }, "ran");
    if (!result.failed) return { stdout: String(result.stdout ?? ""), stderr };
    if (result.isCanceled) {
      throw new VirtfleetError("CANCELLED", `${file} killed: cancelled`, { command, stderr });
    }
    if (result.timedOut) {
      throw new VirtfleetError("COMMAND_TIMEOUT", `${file} timed out after ${timeoutMs} ms`, { command, stderr });
    }
    const code = classifyFailure(stderr);
    const exit = result.exitCode ?? -1;
    const detail = stderr.trim().split("\n").slice(-1)[0] ?? "";
    const why = result.exitCode === undefined ? (result.originalMessage ?? result.shortMessage) : `exit ${exit}`;
    throw new VirtfleetError(code, `${file} failed (${why})${detail ? `: ${detail}` : ""}`, {
      command,
      exitCode: exit,
      stderr,
    });
  }
}
