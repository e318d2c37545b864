import { Command, type Redis } from "ioredis";

/** `$<n>\r\n`, the head of a bulk string of n bytes, made once for the sizes most arguments have. */
const BULK_HEADS = Array.from({ length: 1024 }, (_, n) => `$${n}\r\n`);

function bulkHead(bytes: number): string {
  return BULK_HEADS[bytes] ?? `$${bytes}\r\n`;
}

/**
 * A command of many string arguments whose text is joined ONCE. ioredis builds a command's text by
 * appending argument after argument to a string: for a batched script run or a read of a hundred
 * streams (thousands of arguments), thousands of short-lived strings, garbage that makes the
 * garbage collector stop the process in the middle of a burst of events. Here the pieces (the
 * arguments themselves and heads made once) go into one array joined into one string. The
 * arguments are handed over as they are (not copied with Array.prototype.flat as ioredis's own
 * commands are), and sent as they are: no ioredis `keyPrefix` is added (virtfleet names its keys
 * itself, see Keys).
 */
export class FlatCommand extends Command {
  constructor(name: string, args: string[]) {
    super(name, [], { replyEncoding: "utf8" });
    this.args = args;
  }

  override toWritable(): string {
    const args = this.args as string[];
    const parts: string[] = new Array(1 + 3 * args.length);
    parts[0] = `*${args.length + 1}\r\n${bulkHead(Buffer.byteLength(this.name))}${this.name}\r\n`;
    let p = 1;
    for (const arg of args) {
      parts[p++] = bulkHead(Buffer.byteLength(arg));
      parts[p++] = arg;
      parts[p++] = "\r\n";
    }
    return parts.join("");
  }
}

/** Sends a command of string arguments as a FlatCommand; resolves to its reply (strings as utf8). */
export function sendFlat(redis: Redis, name: string, args: string[]): Promise<unknown> {
  return redis.sendCommand(new FlatCommand(name, args)) as Promise<unknown>;
}
