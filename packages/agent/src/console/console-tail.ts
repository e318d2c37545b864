import { open } from "node:fs/promises";
import {
  CONSOLE_TAIL_BYTES,
  type ConsoleRequest,
  type ConsoleResult,
  toErrorInfo,
  VirtfleetError,
} from "@virtfleet/core";
import type { HostPaths } from "@virtfleet/hypervisor";
import type { Logger } from "pino";
import type { Libvirt } from "../libvirt.js";

/**
 * The last `count` lines of a text file, reading at most `maxBytes` from its end (a console file
 * grows for as long as the VM runs; its start is never read). A line cut by that window is dropped;
 * `\r` is removed (serial consoles end lines with `\r\n`). Also answers the file's mtime.
 */
export async function tailLines(
  path: string,
  count: number,
  maxBytes = CONSOLE_TAIL_BYTES,
): Promise<{ lines: string[]; mtime: Date }> {
  const file = await open(path, "r");
  try {
    const { size, mtime } = await file.stat();
    // One byte before the window too: what comes before the first newline read is then either
    // empty (the window starts a line) or a cut line; both are dropped.
    const start = size > maxBytes ? size - maxBytes - 1 : 0;
    const buffer = Buffer.alloc(size - start);
    const { bytesRead } = await file.read(buffer, 0, buffer.length, start);
    const lines = buffer.toString("utf8", 0, bytesRead).replaceAll("\r", "").split("\n");
    if (lines.at(-1) === "") lines.pop();
    if (start > 0) lines.shift();
    return { lines: lines.slice(-count), mtime };
  } finally {
    await file.close();
  }
}

export interface ConsoleTailOptions {
  libvirt: Libvirt;
  paths: HostPaths;
  hostId: string;
  /** The fleet's identity: only domains whose metadata names this fleet and host are read. */
  fleetId: string;
  logger: Logger;
}

/**
 * Answers console requests (`GET /v1/vms/{name}/console`) on this host: the tail of a fleet VM's
 * serial console file. Another fleet's domain, or one virtfleet did not make, is refused like a
 * missing one (VM_NOT_FOUND).
 */
export class ConsoleTail {
  readonly #o: ConsoleTailOptions;

  constructor(options: ConsoleTailOptions) {
    this.#o = options;
  }

  /** Reads what the request asks; a failure is answered (with its code), never thrown. */
  async read(request: ConsoleRequest): Promise<ConsoleResult> {
    try {
      const { libvirt, hostId, fleetId } = this.#o;
      const owner = await libvirt.ownership(request.vm);
      if (owner === undefined || owner.fleetId !== fleetId || owner.hostId !== hostId)
        throw new VirtfleetError("VM_NOT_FOUND", `no VM "${request.vm}" of this fleet on host "${hostId}"`);
      const { lines, mtime } = await tailLines(this.#o.paths.consolePath(request.vm), request.lines).catch(
        (error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT")
            throw new VirtfleetError("VM_NOT_FOUND", `VM "${request.vm}" has no console file on host "${hostId}"`);
          throw error;
        },
      );
      return { lines, updatedAt: mtime.toISOString() };
    } catch (error) {
      const info = toErrorInfo(error);
      this.#o.logger.warn({ vm: request.vm, code: info.code, err: error }, "console request failed");
      return { error: { code: info.code, message: info.message } };
    }
  }
}
