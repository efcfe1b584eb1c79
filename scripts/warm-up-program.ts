// Regenerates src/machine/riscv/warm-up-program.ts from warm-up-program.S with Debian's riscv64 toolchain
// (src/engines/riscv/cross-assembler.ts, as hart.test.ts checks it): the runs of non-zero halfwords of the flat
// image, with their offsets.
//
//   node --import ./node_modules/tsx/dist/loader.mjs scripts/warm-up-program.ts

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { assembleBinary } from "../src/engines/riscv/cross-assembler.ts";

const riscv = resolve(dirname(fileURLToPath(import.meta.url)), "../src/machine/riscv");
const image = assembleBinary(readFileSync(join(riscv, "warm-up-program.S"), "utf8"));

const words = new Uint16Array(image.buffer, image.byteOffset, image.length >> 1);
/** Runs of halfwords separated by at least 16 zero halfwords (alignment padding stays inside a run). */
const parts: { offset: number; halfwords: number[] }[] = [];
for (let i = 0; i < words.length; ) {
  if (words[i] === 0) {
    i++;
    continue;
  }
  let end = i;
  let zeros = 0;
  for (let j = i; j < words.length && zeros < 16; j++) {
    if (words[j] === 0) zeros++;
    else {
      zeros = 0;
      end = j + 1;
    }
  }
  parts.push({ offset: i * 2, halfwords: [...words.subarray(i, end)] });
  i = end;
}

const hex = (n: number) => `0x${n.toString(16).padStart(4, "0")}`;
let out = `// Machine code of warm-up-program.S, which Rv64Hart runs once per process on a scratch hart (hart.ts,
// warmUp) so that V8 has seen every path of the interpreter loop before it optimizes it. Regenerate from the
// .S file with scripts/warm-up-program.ts when it changes; hart.test.ts checks that the two still agree.

/** Where the program is linked, and the RAM it needs (code plus the data pages it touches). */
export const WARM_UP_BASE = 0x80000000;
export const WARM_UP_RAM_BYTES = 64 * 1024;

/** The non-zero parts of the flat binary: byte offset from WARM_UP_BASE and little-endian halfwords. */
export const WARM_UP_PROGRAM: readonly { readonly offset: number; readonly halfwords: readonly number[] }[] =
  [
`;
for (const p of parts) {
  out += `    {\n      offset: 0x${p.offset.toString(16)},\n      halfwords: [\n`;
  for (let i = 0; i < p.halfwords.length; i += 12)
    out += `        ${p.halfwords
      .slice(i, i + 12)
      .map(hex)
      .join(", ")},\n`;
  out += "      ],\n    },\n";
}
out += "  ];\n";
writeFileSync(join(riscv, "warm-up-program.ts"), out);
process.stdout.write(`wrote ${parts.length} parts, ${image.length} bytes of image\n`);
