// Placeholder for the "F" and "D" extensions (unprivileged spec §11–12) until the FPU module lands:
// every floating-point instruction is an illegal instruction. The FPU helper replaces this whole file.

/** What the FPU needs from a hart (Rv64Hart implements it). */
export interface FpuHost {
  readonly x: Int32Array;
  readonly fr: Int32Array;
  fflags: number;
  frm: number;
  tmpLo: number;
  tmpHi: number;
  loadFp32(lo: number, hi: number): number;
  loadFp64(lo: number, hi: number): void;
  storeFp32(lo: number, hi: number, v: number): void;
  storeFp64(lo: number, hi: number, vlo: number, vhi: number): void;
  fpEnabled(): boolean;
  markFsDirty(): void;
  raiseIllegalInstruction(insn: number): never;
}

/** Execute one LOAD-FP, STORE-FP, fused multiply-add or OP-FP instruction. */
export function executeFp(h: FpuHost, insn: number): void {
  h.raiseIllegalInstruction(insn);
}
