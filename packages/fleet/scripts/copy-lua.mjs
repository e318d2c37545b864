// Copies the Lua scripts that sit next to the TypeScript in src/ into dist/, where the built code loads them.
import { cpSync, statSync } from "node:fs";

cpSync("src", "dist", { recursive: true, filter: (p) => statSync(p).isDirectory() || p.endsWith(".lua") });
