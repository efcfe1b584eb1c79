// The machine's public index: what engines and hosts may use of the emulated computer.

export { MachineError } from "./base/machine-error.ts";
export { BoardTurn } from "./boards/board-turn.ts";
export type { BootFile } from "./boards/boot-plan.ts";
export { isElf } from "./boards/elf-loader.ts";
export { parseLinuxImage } from "./boards/linux-image.ts";
export {
  BOARD_SNAPSHOT,
  type BoardStats,
  type PowerEvent,
  RiscvVirtBoard,
  type RiscvVirtBoardState,
  type RiscvVirtConfig,
  type RiscvVirtHost,
  VIRT_MAX_HARTS,
  VIRT_MAX_MEMORY,
  VIRT_MIN_MEMORY,
} from "./boards/riscv-virt.ts";
export type { VirtioConsolePortConfig } from "./devices/virtio/virtio-console.ts";
export { type VirtioNet, type VirtioNetStats } from "./devices/virtio/virtio-net.ts";
export type { Rv64HartState } from "./riscv/hart.ts";
export { AwayHart } from "./smp/away-hart.ts";
export type { HartThreadStats } from "./smp/hart-link.ts";
export type { AwayHartSetup } from "./smp/remote-harts.ts";
export type { BlockBackend, CharSink, Clock, Completion, EntropySource, NetworkPort } from "./ports.ts";
export {
  decodeStateTree,
  encodeStateTree,
  MAX_STATE_MANIFEST_BYTES,
  MAX_STATE_SECTION_BYTES,
  MAX_STATE_TREE_BYTES,
  parseStateManifest,
  STATE_FORMAT,
  STATE_MAGIC,
  STATE_TYPED_ARRAYS,
  type SnapshotLike,
  type StateArray,
  type StateArrayType,
  StateFormatError,
  type StateManifest,
  type StateSectionEntry,
  sectionArray,
  sectionFileName,
  stateManifest,
} from "./state/state-file-format.ts";
export {
  checkTabUploadHeader,
  MAX_TAB_UPLOAD_HEADER_BYTES,
  TAB_UPLOAD_MAGIC,
  type TabDiskBase,
  type TabUploadHeader,
} from "./state/tab-state-upload-format.ts";
