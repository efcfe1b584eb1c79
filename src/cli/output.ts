// Output of CLI commands: aligned tables for people, JSON for programs (--format json), and error lines.

export type OutputFormat = "table" | "json";

export function parseFormat(value: string | undefined): OutputFormat | string {
  if (value === undefined || value === "table" || value === "text") return "table";
  if (value === "json") return "json";
  return `--format must be table or json (got '${value}')`;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Columns padded to their widest cell; the last column is not padded. */
export function printTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${[line(header), ...rows.map(line)].join("\n")}\n`);
}

/** Prints `tsvm <command>: <message>` and returns the exit status: 2 for usage errors, else 1. */
export function fail(command: string, e: unknown, usage = false): number {
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`tsvm ${command}: ${message}\n`);
  return usage ? 2 : 1;
}

/** "3m ago", "2h ago", "5d ago" from an ISO time. */
export function age(iso: string | null, now = Date.now()): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
