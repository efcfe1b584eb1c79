// The messages between the /machine page and its machine worker (postMessage both ways): what the page asks
// of the machine, and what the machine tells the page. Plain data and transferable buffers only.

import type { StateManifest } from "../../machine/index.ts";

/** What the board is built with: the same for a fresh boot and for a restore (it must match the state). */
export interface TabMachineSpec {
  readonly harts: number;
  readonly memoryBytes: number;
  readonly bootargs: string;
  /** Named virtio-console ports after port 0 (a server VM has its guest agent's): a state lists them. */
  readonly consolePorts: readonly string[];
  /** Network cards' MACs (xx:xx:…); the tab has no network, but a state from a VM with cards has them. */
  readonly macs: readonly string[];
}

export interface TabBootFiles {
  readonly firmware: ArrayBuffer;
  readonly kernel: ArrayBuffer;
  readonly initrd: ArrayBuffer;
  readonly disk: ArrayBuffer;
}

/** A saved state's files as the server stores them (src/machine/state/state-file-format.ts). */
export interface TabStateFiles {
  readonly manifest: string;
  readonly tree: ArrayBuffer;
  readonly sections: readonly ArrayBuffer[];
}

/** A state the machine saved, ready to upload (tab-state-upload-format.ts). */
export interface TabSavedState {
  readonly manifest: StateManifest;
  readonly tree: Uint8Array;
  readonly sections: readonly Uint8Array[];
  /** The disk pages written since the disk was fetched, or the whole disk (`whole`). */
  readonly disk: ReadonlyArray<{ readonly offset: number; readonly bytes: Uint8Array }>;
}

export type PageToMachine =
  | {
      readonly type: "boot";
      readonly spec: TabMachineSpec;
      readonly files: TabBootFiles;
      /** Resume this state instead of booting. */
      readonly state?: TabStateFiles;
    }
  | { readonly type: "save"; readonly wholeDisk: boolean }
  | { readonly type: "input"; readonly bytes: Uint8Array }
  | { readonly type: "pause" }
  | { readonly type: "resume" };

export interface TabMachineStatus {
  readonly state: "running" | "paused" | "exited";
  /** Guest instructions per second over the last second. */
  readonly instructionsPerSecond: number;
  /** Instructions retired, all harts. */
  readonly instret: number;
  /** Milliseconds since the machine started. */
  readonly uptimeMs: number;
}

export type MachineToPage =
  | { readonly type: "console"; readonly bytes: Uint8Array }
  | { readonly type: "status"; readonly status: TabMachineStatus }
  | { readonly type: "exit"; readonly message: string }
  | { readonly type: "saved"; readonly state: TabSavedState }
  | { readonly type: "error"; readonly message: string };
