import { Command, type Redis } from "ioredis";

/** `$<n>\r\n`, the head of a bulk string of n bytes, made once for the sizes most arguments have. */
const BULK_HEADS = Array.from({ length: 1024 }, (_, n) => `$${n}\r\n`);

function bulkHead(bytes: number): string {
  return BULK_HEADS[bytes] ?? `$${bytes}\r\n`;
}

/**
 * A command of many string arguments, its text made in one pass over them. ioredis's own commands
 * copy their arguments (Array.prototype.flat, keyPrefix, a Buffer check per argument) before writing
 * them; for a batched script run or a read of a hundred streams (thousands of arguments) that is
 * most of what sending costs. Here the arguments are handed over as they are (not copied), each
 * appended with its head (made once for sizes under 1 KiB) to one string, which the socket turns
 * into bytes in one call. Measured on a 25-append script run (425 arguments): 27 µs, against 43 µs
 * for the pieces joined from an array and 147 µs for each piece written into a Buffer. Sent as they
 * are: no ioredis `keyPrefix` is added (virtfleet names its keys itself, see Keys).
 */
export class FlatCommand extends Command {
  constructor(name: string, args: string[]) {
    super(name, [], { replyEncoding: "utf8" });
    this.args = args;
  }

  override toWritable(): string {
    const args = this.args as string[];
    let text = `*${args.length + 1}\r\n${bulkHead(Buffer.byteLength(this.name))}${this.name}\r\n`;
    for (const arg of args) text += `${bulkHead(Buffer.byteLength(arg))}${arg}\r\n`;
    return text;
  }
}

/** Sends a command of string arguments as a FlatCommand; resolves to its reply (strings as utf8). */
export function sendFlat(redis: Redis, name: string, args: string[]): Promise<unknown> {
  return redis.sendCommand(new FlatCommand(name, args)) as Promise<unknown>;
}
