import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { VmMarker } from "@virtfleet/core";

export { VmMarker };

/** The file virtfleet writes into every VM folder it makes: only folders carrying it are ever removed. */
export const MARKER_FILE = ".virtfleet.json";

export async function writeMarker(dir: string, marker: VmMarker): Promise<void> {
  await writeFile(path.join(dir, MARKER_FILE), `${JSON.stringify(marker)}\n`, { mode: 0o644 });
}

/**
 * The folder's marker; undefined when it has none, or one that does not parse or names another VM
 * (then the folder is not provably virtfleet's).
 */
export async function readMarker(dir: string): Promise<VmMarker | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, MARKER_FILE), "utf8");
  } catch {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = VmMarker.safeParse(json);
  if (!parsed.success || parsed.data.vm !== path.basename(dir)) return undefined;
  return parsed.data;
}
