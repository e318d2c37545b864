import fc from "fast-check";
import { Command } from "ioredis";
import { describe, expect, test } from "vitest";
import { FlatCommand } from "./flat-command.js";

/** What ioredis itself writes for a command of these string arguments. */
function ioredisText(name: string, args: string[]): string {
  const command = new Command(name, args, { replyEncoding: "utf8" });
  return String(command.toWritable({}));
}

describe("FlatCommand", () => {
  test("writes exactly what ioredis writes, whatever the arguments (empty, multi-byte, over 1023 bytes)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("evalsha", "eval", "xread"),
        fc.array(
          fc.oneof(
            fc.string(),
            fc.string({ unit: "grapheme", maxLength: 40 }),
            fc.string({ minLength: 1000, maxLength: 1500 }),
          ),
        ),
        (name, args) => {
          expect(new FlatCommand(name, [...args]).toWritable()).toBe(ioredisText(name, args));
        },
      ),
    );
  });

  test("a bulk string's length is counted in bytes: 'é' is 2, '🚀' is 4, 1024 ASCII bytes are 1024", () => {
    const text = new FlatCommand("xread", ["é", "🚀", "", "a".repeat(1024)]).toWritable();
    expect(text).toBe(`*5\r\n$5\r\nxread\r\n$2\r\né\r\n$4\r\n🚀\r\n$0\r\n\r\n$1024\r\n${"a".repeat(1024)}\r\n`);
  });

  test("keeps the argument list it is given (not copied), as ioredis reads it for retries and errors", () => {
    const args = ["COUNT", "10", "STREAMS", "k", "0"];
    expect(new FlatCommand("xread", args).args).toBe(args);
  });
});
