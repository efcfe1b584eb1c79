// QEMU's "sifive,test0" finisher on the virt board (QEMU hw/misc/sifive_test.c): a 32-bit write at offset 0
// powers the machine off, resets it, or exits with a failure code; Linux reaches it through the
// syscon-poweroff (0x5555) and syscon-reboot (0x7777) device-tree nodes.

import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import type { ComponentState, Stateful } from "../state/stateful.ts";
import { checkState } from "../state/stateful.ts";

/** Low 16 bits of the command word (QEMU's names); the high 16 bits are FINISHER_FAIL's exit code. */
export const FINISHER_FAIL = 0x3333;
export const FINISHER_PASS = 0x5555;
export const FINISHER_RESET = 0x7777;
/** Bytes of the window on QEMU virt (0x0010_0000). */
export const SIFIVE_TEST_SIZE = 0x1000;

const STATE_VERSION = 1;

export type PowerKind = "poweroff" | "reset";

/** The finisher holds no state; its saved form is its version alone, so a snapshot names it. */
export type SifiveTestState = ComponentState;

export class SifiveTest implements MmioDevice, Stateful<SifiveTestState> {
  /**
   * @param onPower called on a command: ("poweroff", 0) for pass, ("poweroff", code) for fail (1 when the
   *   code is 0), ("reset", 0).
   *   The board acts on it after the current slice; the write itself returns normally.
   */
  constructor(
    private readonly onPower: (kind: PowerKind, exitCode: number) => void,
    readonly id = "test@100000",
  ) {}

  read(_offset: number, _width: AccessWidth): number {
    return 0;
  }

  write(offset: number, width: AccessWidth, value: number): void {
    // Guest-controlled: only a 16- or 32-bit write at offset 0 is a command (QEMU accepts 2 to 4 bytes);
    // anything else, and any unknown command, is ignored.
    if (offset !== 0 || width === 1) return;
    const status = value & 0xffff;
    const code = width === 4 ? value >>> 16 : 0;
    if (status === FINISHER_PASS) this.onPower("poweroff", 0);
    // A failure is never reported as success: QEMU would exit 0 for FINISHER_FAIL with code 0, but a
    // program that says it failed must not look like one that passed, so its code becomes 1.
    else if (status === FINISHER_FAIL) this.onPower("poweroff", code === 0 ? 1 : code);
    else if (status === FINISHER_RESET) this.onPower("reset", 0);
  }

  /** Nothing to reset; present so the board can treat every device alike. */
  reset(): void {}

  saveState(): SifiveTestState {
    return { version: STATE_VERSION };
  }

  loadState(state: SifiveTestState): void {
    checkState(state.version === STATE_VERSION, this.id, `version ${state.version} is not ${STATE_VERSION}`);
  }
}
