import { Command, type Redis } from "ioredis";

/** Writes `n` (a whole number ≥ 0) in decimal at `at`; returns the offset after it. */
function writeDecimal(buf: Buffer, n: number, at: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  let x = n;
  for (let i = at + digits - 1; i >= at; i--) {
    buf[i] = 48 + (x % 10);
    x = Math.floor(x / 10);
  }
  return at + digits;
}

/** Decimal digits of `n` (a whole number ≥ 0). */
function decimalLength(n: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  return digits;
}

/**
 * A command of many string arguments written to Redis as ONE buffer, filled in place. ioredis
 * builds a command's text by appending argument after argument to a string: for a batched script
 * run or a read of a hundred streams (thousands of arguments), thousands of short-lived strings,
 * then copied again when written, garbage that makes the garbage collector stop the process in
 * the middle of a burst of events. The arguments are handed over as they are (not copied with
 * Array.prototype.flat as ioredis's own commands are).
 */
export class FlatCommand extends Command {
  constructor(name: string, args: string[]) {
    super(name, [], { replyEncoding: "utf8" });
    this.args = args;
  }

  override toWritable(): Buffer {
    const args = this.args as string[];
    const lengths = new Array<number>(args.length);
    let size = 1 + decimalLength(args.length + 1) + 2 + 1 + decimalLength(this.name.length) + 2 + this.name.length + 2;
    for (let i = 0; i < args.length; i++) {
      const n = Buffer.byteLength(args[i] as string);
      lengths[i] = n;
      size += 1 + decimalLength(n) + 2 + n + 2;
    }
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    buf[at++] = 42; // *
    at = writeDecimal(buf, args.length + 1, at);
    at += buf.write(`\r\n$${this.name.length}\r\n${this.name}\r\n`, at, "latin1");
    for (let i = 0; i < args.length; i++) {
      buf[at++] = 36; // $
      at = writeDecimal(buf, lengths[i] as number, at);
      buf[at++] = 13;
      buf[at++] = 10;
      at += buf.write(args[i] as string, at);
      buf[at++] = 13;
      buf[at++] = 10;
    }
    return buf;
  }
}

/** Sends a command of string arguments as a FlatCommand; resolves to its reply (strings as utf8). */
export function sendFlat(redis: Redis, name: string, args: string[]): Promise<unknown> {
  return redis.sendCommand(new FlatCommand(name, args)) as Promise<unknown>;
}
