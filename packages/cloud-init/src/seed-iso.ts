import { mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { SeedDocuments } from "./documents.js";

/** The volume id cloud-init's NoCloud datasource looks for. */
export const SEED_VOLUME_ID = "cidata";
/** The seed's file name in the VM's folder. */
export const SEED_FILE_NAME = "cidata.iso";

/**
 * argv for `xorrisofs` (Debian package `xorriso`): an ISO 9660 image with Joliet and Rock Ridge
 * names, volume id `cidata`, holding each file at its root under its own name (virt-install's recipe).
 */
export function xorrisofsArgs(output: string, files: readonly string[]): string[] {
  return ["-output", output, "-volid", SEED_VOLUME_ID, "-joliet", "-rock", "-input-charset", "utf8", ...files];
}

export interface WriteSeedIsoOptions {
  /** Where the staging folder is made (the VM's folder): the files never leave it. */
  dir: string;
  /** The ISO to write. */
  output: string;
  documents: SeedDocuments;
  /** Runs `xorrisofs` with these arguments (argv, no shell). */
  xorrisofs: (args: string[]) => Promise<unknown>;
}

/**
 * Writes the documents into a private staging folder inside `dir` (0700, files 0600), makes the
 * ISO from them, and removes the folder whatever happens. The caller gives the ISO its owner and mode.
 */
export async function writeSeedIso(o: WriteSeedIsoOptions): Promise<void> {
  const staging = await mkdtemp(path.join(o.dir, ".cidata-"));
  try {
    const files: string[] = [];
    for (const [name, text] of Object.entries(o.documents)) {
      if (text === undefined) continue;
      const file = path.join(staging, name);
      await writeFile(file, text, { mode: 0o600 });
      files.push(file);
    }
    await o.xorrisofs(xorrisofsArgs(o.output, files));
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
