// Fuzzers for the board's register-only devices (CLINT, PLIC, 16550 UART, goldfish RTC, sifive_test): seeded
// reads and writes of every width at register offsets, anywhere in the window and outside it, mixed with the
// host's own inputs (time passing, interrupt lines, serial input), checking what every MmioDevice promises.

import { CallbackIrqLine } from "../../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../../bus/mmio-device.ts";
import type { ComponentState, Stateful } from "../../state/stateful.ts";
import { CLINT_MTIME, CLINT_MTIMECMP_BASE, CLINT_SIZE, Clint } from "../clint.ts";
import { GOLDFISH_RTC_SIZE, GoldfishRtc } from "../goldfish-rtc.ts";
import {
  PLIC_CONTEXT_BASE,
  PLIC_CONTEXT_STRIDE,
  PLIC_ENABLE_BASE,
  PLIC_ENABLE_STRIDE,
  PLIC_PENDING_BASE,
  Plic,
} from "../plic.ts";
import {
  FINISHER_FAIL,
  FINISHER_PASS,
  FINISHER_RESET,
  SIFIVE_TEST_SIZE,
  SifiveTest,
} from "../sifive-test.ts";
import { UART_SIZE, Uart16550 } from "../uart16550.ts";
import {
  checkStateRoundTrip,
  type DeviceFuzzer,
  type DeviceFuzzTarget,
  FuzzViolation,
} from "./device-fuzz-target.ts";
import type { SeededRandom } from "./seeded-random.ts";

const WIDTHS: readonly AccessWidth[] = [1, 2, 4, 4];

/** A Clock the fuzzer moves forward by hand. */
class FuzzClock {
  now = 1000;
  nowMs(): number {
    return this.now;
  }
}

/**
 * One guest access to `device`: at a register (`hot`, perhaps a byte or two off), anywhere in its `size`-byte
 * window, or just outside it; a read's value must fit its width (the MmioDevice contract).
 */
function access(
  r: SeededRandom,
  device: MmioDevice,
  hot: readonly number[],
  size: number,
): "reads" | "writes" {
  const where = r.below(10);
  const offset =
    where < 6
      ? r.pick(hot) + (r.chance(0.8) ? 0 : r.below(4))
      : where < 9
        ? r.below(size)
        : r.pick([-4, -1, size - 1, size, size + 4, 0x7fffffff]);
  const width = r.pick(WIDTHS);
  if (r.chance(0.5)) {
    device.write(offset, width, r.value32() % 2 ** (8 * width));
    return "writes";
  }
  const v = device.read(offset, width);
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** (8 * width))
    throw new FuzzViolation(`a ${width}-byte read at 0x${offset.toString(16)} returned ${v}`);
  return "reads";
}

/** A target over a device whose whole guest interface is its register window. */
class RegisterTarget<S extends ComponentState, D extends MmioDevice & Stateful<S>>
  implements DeviceFuzzTarget
{
  readonly coverage: Record<string, number> = { reads: 0, writes: 0, hostInputs: 0 };

  constructor(
    private readonly r: SeededRandom,
    private readonly device: D,
    private readonly hot: readonly number[],
    private readonly size: number,
    private readonly make: () => D,
    /** A host-side input (time, an interrupt line, serial bytes), or null. */
    private readonly hostInput: (() => void) | null,
    /** Device-specific invariants, checked with the round trip. */
    private readonly invariants: () => void = () => {},
  ) {}

  step(): void {
    if (this.hostInput !== null && this.r.chance(0.1)) {
      this.hostInput();
      this.coverage.hostInputs!++;
      return;
    }
    this.coverage[access(this.r, this.device, this.hot, this.size)]!++;
  }

  check(): void {
    this.invariants();
    checkStateRoundTrip(this.device, this.make());
  }
}

function range(start: number, count: number, stride: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i * stride);
}

const HARTS = 2;

export const clintFuzzer: DeviceFuzzer = {
  name: "Clint",
  make(r) {
    const clock = new FuzzClock();
    const lines = () => range(0, HARTS, 1).map(() => new CallbackIrqLine(() => {}));
    const mtip = lines();
    const make = () => new Clint(clock, lines(), lines());
    const clint = new Clint(clock, lines(), mtip);
    const hot = [...range(0, HARTS + 1, 4), ...range(CLINT_MTIMECMP_BASE, 2 * HARTS + 2, 4), CLINT_MTIME];
    hot.push(CLINT_MTIME + 4);
    return new RegisterTarget(
      r,
      clint,
      hot,
      CLINT_SIZE,
      make,
      () => {
        clock.now += r.pick([0, 0.001, 1, 1000, 1e7]);
        clint.update();
        const next = clint.nextDeadlineMs();
        if (Number.isNaN(next)) throw new FuzzViolation("nextDeadlineMs() is NaN");
      },
      () => {
        // ACLINT §2: MTIP is pending exactly while mtime ≥ mtimecmp.
        clint.update();
        const t = clint.mtime();
        for (let h = 0; h < HARTS; h++) {
          const cmp =
            clint.read(CLINT_MTIMECMP_BASE + 8 * h, 4) +
            clint.read(CLINT_MTIMECMP_BASE + 8 * h + 4, 4) * 2 ** 32;
          if (mtip[h]!.high !== t >= cmp)
            throw new FuzzViolation(`hart ${h}: MTIP is not (mtime ≥ mtimecmp)`);
        }
      },
    );
  },
};

export const plicFuzzer: DeviceFuzzer = {
  name: "Plic",
  make(r) {
    const contextLines = () => range(0, 2 * HARTS, 1).map(() => new CallbackIrqLine(() => {}));
    const lines = contextLines();
    const plic = new Plic(lines);
    const hot = [
      ...range(0, 97, 4),
      ...range(PLIC_PENDING_BASE, 4, 4),
      ...range(0, 2 * HARTS + 1, PLIC_ENABLE_STRIDE).flatMap((c) => range(PLIC_ENABLE_BASE + c, 4, 4)),
      ...range(PLIC_CONTEXT_BASE, 2 * HARTS + 1, PLIC_CONTEXT_STRIDE).flatMap((c) => [c, c + 4]),
    ];
    return new RegisterTarget(
      r,
      plic,
      hot,
      plic.size,
      () => new Plic(contextLines()),
      () => {
        // A device drives its line (sources 1..95; the board's devices re-assert levels freely).
        plic.sourceLine(1 + r.below(95)).set(r.chance(0.5));
      },
      () => {
        // A context's interrupt is asserted exactly while a claim would return a source (claimed on a copy,
        // since claiming changes the state).
        for (let ctx = 0; ctx < lines.length; ctx++) {
          const copy = new Plic(contextLines());
          copy.loadState(plic.saveState());
          const claimable = copy.read(PLIC_CONTEXT_BASE + ctx * PLIC_CONTEXT_STRIDE + 4, 4) !== 0;
          if (lines[ctx]!.high !== claimable)
            throw new FuzzViolation(`context ${ctx}: the interrupt line does not match what a claim finds`);
        }
      },
    );
  },
};

export const uartFuzzer: DeviceFuzzer = {
  name: "Uart16550",
  make(r) {
    let sent = 0;
    const sink = { write: (b: Uint8Array) => void (sent += b.length) };
    const uart = new Uart16550(sink, new CallbackIrqLine(() => {}));
    const make = () => new Uart16550(sink, new CallbackIrqLine(() => {}));
    return new RegisterTarget(r, uart, range(0, 8, 1), UART_SIZE, make, () => {
      if (r.chance(0.5)) uart.receive(new Uint8Array(r.below(40)).fill(0x61));
      else uart.flush();
    });
  },
};

export const goldfishRtcFuzzer: DeviceFuzzer = {
  name: "GoldfishRtc",
  make(r) {
    const clock = new FuzzClock();
    let wall = 1.7e12;
    const wallClock = () => wall;
    const rtc = new GoldfishRtc(clock, new CallbackIrqLine(() => {}), wallClock);
    const make = () => new GoldfishRtc(clock, new CallbackIrqLine(() => {}), wallClock);
    return new RegisterTarget(r, rtc, range(0, 8, 4), GOLDFISH_RTC_SIZE, make, () => {
      const ms = r.pick([0, 0.5, 1000, 1e9]);
      clock.now += ms;
      wall += ms;
      rtc.update();
      if (Number.isNaN(rtc.nextDeadlineMs())) throw new FuzzViolation("nextDeadlineMs() is NaN");
    });
  },
};

export const sifiveTestFuzzer: DeviceFuzzer = {
  name: "SifiveTest",
  make(r) {
    const events: string[] = [];
    const finisher = new SifiveTest((kind, code) => events.push(`${kind} ${code}`));
    const target: DeviceFuzzTarget = {
      coverage: { commands: 0, ignored: 0 },
      step() {
        const offset = r.chance(0.7) ? 0 : r.below(SIFIVE_TEST_SIZE + 8) - 4;
        const width = r.pick(WIDTHS);
        const low = r.chance(0.5) ? r.pick([FINISHER_FAIL, FINISHER_PASS, FINISHER_RESET]) : r.below(0x10000);
        const value = (low + (width === 4 ? r.below(0x10000) * 0x10000 : 0)) % 2 ** (8 * width);
        if (r.chance(0.2)) {
          if (finisher.read(offset, width) !== 0) throw new FuzzViolation("the finisher reads as non-zero");
          return;
        }
        events.length = 0;
        finisher.write(offset, width, value);
        // QEMU's sifive_test: only a 2- or 4-byte write at offset 0 with one of the three commands acts; a
        // failure with code 0 is reported as code 1, never as success.
        const status = value & 0xffff;
        const code = width === 4 ? value >>> 16 : 0;
        const expected =
          offset !== 0 || width === 1
            ? []
            : status === FINISHER_PASS
              ? ["poweroff 0"]
              : status === FINISHER_FAIL
                ? [`poweroff ${code === 0 ? 1 : code}`]
                : status === FINISHER_RESET
                  ? ["reset 0"]
                  : [];
        if (events.join() !== expected.join())
          throw new FuzzViolation(`write 0x${value.toString(16)}/${width} at ${offset} gave [${events}]`);
        target.coverage[expected.length > 0 ? "commands" : "ignored"]!++;
      },
      check() {
        checkStateRoundTrip(finisher, new SifiveTest(() => {}));
      },
    };
    return target;
  },
};
