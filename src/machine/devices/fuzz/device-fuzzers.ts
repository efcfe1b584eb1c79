// Every device fuzzer, in the order reports list them: one per guest-facing device of the riscv-virt board.

import type { DeviceFuzzer } from "./device-fuzz-target.ts";
import {
  clintFuzzer,
  goldfishRtcFuzzer,
  plicFuzzer,
  sifiveTestFuzzer,
  uartFuzzer,
} from "./register-device-fuzzers.ts";
import { virtioBlkFuzzer, virtioConsoleFuzzer, virtioRngFuzzer, virtqueueFuzzer } from "./virtio-fuzzers.ts";

export const DEVICE_FUZZERS: readonly DeviceFuzzer[] = [
  clintFuzzer,
  plicFuzzer,
  uartFuzzer,
  goldfishRtcFuzzer,
  sifiveTestFuzzer,
  virtqueueFuzzer,
  virtioBlkFuzzer,
  virtioConsoleFuzzer,
  virtioRngFuzzer,
];
