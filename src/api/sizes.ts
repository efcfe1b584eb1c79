// Sizes as people type them ("128M", "1G", "1.5GiB", "512") turned into whole MiB for the API.

const UNITS: Record<string, number> = {
  "": 1,
  k: 1 / 1024,
  m: 1,
  g: 1024,
  t: 1024 * 1024,
};

/**
 * MiB for a size like 128M, 1G, 2GiB, 1.5G, or a plain number of MiB. Binary units (M = MiB). Returns an
 * error string for anything else, or a size that is not a whole number of MiB.
 */
export function parseMiB(text: string): number | string {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) return `'${text.slice(0, 40)}' is not a size; write it like 128M, 1G or 512 (MiB)`;
  const mib = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isFinite(mib) || !Number.isInteger(mib))
    return `'${text.slice(0, 40)}' is not a whole number of MiB`;
  return mib;
}

/** "128 MiB", "2 GiB", "1.5 GiB". */
export function formatMiB(mib: number): string {
  if (mib >= 1024 && mib % 64 === 0) return `${mib / 1024} GiB`;
  return `${mib} MiB`;
}
