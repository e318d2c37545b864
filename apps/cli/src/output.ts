import type { StreamedEvent } from "@virtfleet/core";

/** One event as a line: `[ 40%] budgie  domain.defining  running virt-install`. */
export function formatEvent(e: StreamedEvent, withVm: boolean): string {
  const pct = `[${String(e.percent).padStart(3)}%]`;
  const head = withVm ? `${pct} ${e.vm.padEnd(16)} ${e.phase.padEnd(16)}` : `${pct} ${e.phase.padEnd(16)}`;
  let line = `${head} ${e.message}`;
  if (e.error !== undefined) {
    if (e.error.command !== undefined) line += `\n       command: ${e.error.command.join(" ")}`;
    if (e.error.stderr !== undefined && e.error.stderr.trim() !== "")
      line += `\n       stderr: ${e.error.stderr.trim().split("\n").join("\n               ")}`;
  }
  return line;
}

export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}
