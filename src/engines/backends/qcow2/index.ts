// qcow2 (version 3) and raw disk images for tsvm's VMs: creating, inspecting, flattening and opening them,
// in TypeScript over node:fs (no qemu-img at run time). See docs/disks.md.

export { type ConvertDiskOptions, convertDisk } from "./convert-disk.ts";
export { type BackingSpec, type CreateQcow2Options, createQcow2, setBacking } from "./create-qcow2.ts";
export type { DiskBackend } from "./disk-backend.ts";
export { type ChainEntry, type DiskInfo, diskChain, MAX_CHAIN_DEPTH, readDiskInfo } from "./disk-chain.ts";
export { hasOwnData } from "./has-own-data.ts";
export { type OpenDiskOptions, openDisk, reclaimLeaks } from "./open-disk.ts";
export { Qcow2Error, type Qcow2ErrorCode } from "./qcow2-error.ts";
export type { DiskFormat } from "./qcow2-header.ts";
