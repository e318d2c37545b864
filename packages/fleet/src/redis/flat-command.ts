import { Command, type Redis } from "ioredis";

/** `$<n>\r\n`, the head of a bulk string of n bytes, made once for the sizes most arguments have. */
const BULK_HEADS = Array.from({ length: 1024 }, (_, n) => `$${n}\r\n`);

function bulkHead(bytes: number): string {
  return BULK_HEADS[bytes] ?? `$${bytes}\r\n`;
}

/** The arguments' sizes in bytes, while a command is written (reused: toWritable runs start to end at once). */
let sizes = new Uint32Array(4096);

/**
 * A command of many string arguments whose text is written ONCE, into one buffer. ioredis builds a
 * command's text by appending argument after argument to a string: for a batched script run or a
 * read of a hundred streams (thousands of arguments), thousands of short-lived strings, garbage
 * that makes the garbage collector stop the process in the middle of a burst of events. Here each
 * argument (and its head, made once) is written in place into a buffer sized to the whole text:
 * no string of the whole command is made on the JavaScript heap (the socket takes the buffer as
 * it is, with no conversion of its own). The
 * arguments are handed over as they are (not copied with Array.prototype.flat as ioredis's own
 * commands are), and sent as they are: no ioredis `keyPrefix` is added (virtfleet names its keys
 * itself, see Keys).
 */
export class FlatCommand extends Command {
  constructor(name: string, args: string[]) {
    super(name, [], { replyEncoding: "utf8" });
    this.args = args;
  }

  override toWritable(): Buffer {
    const args = this.args as string[];
    // Each argument's size in bytes, then one buffer of the whole text, each piece written in place.
    if (sizes.length < args.length) sizes = new Uint32Array(2 * args.length);
    const head = `*${args.length + 1}\r\n${bulkHead(Buffer.byteLength(this.name))}${this.name}\r\n`;
    let total = Buffer.byteLength(head);
    for (let i = 0; i < args.length; i++) {
      const size = Buffer.byteLength(args[i] as string);
      sizes[i] = size;
      total += bulkHead(size).length + size + 2;
    }
    const out = Buffer.allocUnsafe(total);
    let at = out.write(head, 0);
    for (let i = 0; i < args.length; i++) {
      at += out.write(bulkHead(sizes[i] as number), at, "latin1");
      at += out.write(args[i] as string, at);
      out[at++] = 13;
      out[at++] = 10;
    }
    return out;
  }
}

/** Sends a command of string arguments as a FlatCommand; resolves to its reply (strings as utf8). */
export function sendFlat(redis: Redis, name: string, args: string[]): Promise<unknown> {
  return redis.sendCommand(new FlatCommand(name, args)) as Promise<unknown>;
}
