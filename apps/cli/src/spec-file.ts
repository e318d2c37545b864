import { toValidationError, ValidationError } from "@virtfleet/core";
import { parse, YAMLError } from "yaml";
import type { z } from "zod";
import { type ReadTextFile, readTextFile } from "./cloud-init-flags.js";

/** The flag that names a spec file (`templates put NAME -f FILE`, `lab up -f FILE`). */
export const SPEC_FILE_FLAG = "-f";

/**
 * A spec file whose content is wrong: its issues name the field inside the file (`memoryMiB`,
 * `vms.1.template`), not a flag, and its message names the file.
 */
export class SpecFileError extends ValidationError {
  /** The file, as the user named it. */
  readonly file: string;

  constructor(file: string, what: string, issues: readonly { field: string; message: string }[]) {
    super(issues);
    this.file = file;
    this.message = `${what} file ${file}: ${this.message}`;
  }
}

function badFile(message: string): never {
  throw new ValidationError([{ field: SPEC_FILE_FLAG, message }]);
}

/**
 * Reads a YAML or JSON file (JSON is YAML) and parses it with `schema`.
 * A missing, unreadable or empty file, or one that is not YAML, is INVALID_SPEC naming `-f`;
 * content the schema refuses is a SpecFileError naming the field in the file and the file.
 *
 * @param what what the file holds, for messages (`template`, `lab`)
 */
export function readSpecFile<S extends z.ZodType>(
  path: string,
  schema: S,
  what: string,
  read: ReadTextFile = readTextFile,
): z.infer<S> {
  const text = read(SPEC_FILE_FLAG, path);
  let doc: unknown;
  try {
    // YAML 1.2 core schema: `yes`/`no` stay strings; duplicate keys and alias bombs are refused.
    doc = parse(text, { uniqueKeys: true, prettyErrors: true });
  } catch (error) {
    if (!(error instanceof YAMLError)) throw error;
    // prettyErrors: "<reason> at line L, column C:" then an excerpt; the first line says it all.
    const first = error.message.split("\n")[0]?.replace(/:$/, "") ?? "";
    badFile(`${path} is not valid YAML or JSON: ${first}`);
  }
  if (doc === null || doc === undefined) badFile(`${path} is empty: expected a ${what} as YAML or JSON`);
  const result = schema.safeParse(doc);
  if (!result.success) throw new SpecFileError(path, what, toValidationError(result.error).issues);
  return result.data;
}
