// A virtio block device (VIRTIO 1.2 §5.2) over a BlockBackend: read, write, flush, get-id, and (when the
// backend can) discard and write-zeroes requests on one request queue, completed asynchronously as the host
// disk answers.

import type { AccessWidth } from "../../bus/mmio-device.ts";
import type { BlockBackend } from "../../ports.ts";
import { type ComponentState, checkState } from "../../state/stateful.ts";
import { readConfigBytes, type VirtioDevice, type VirtioTransport } from "./virtio-device.ts";
import { VIRTIO_ID_BLOCK } from "./virtio-spec.ts";
import { DescriptorChain, VIRTQUEUE_MAX_SIZE } from "./virtqueue.ts";

// §5.2.3 feature bits.
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

// §5.2.6 request types and status values.
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
/** §5.2.6: "The device ID string is a NUL-padded ASCII string up to 20 bytes long." */
export const VIRTIO_BLK_ID_BYTES = 20;
/** §5.2.6 struct virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors, le32 flags. */
export const VIRTIO_BLK_SEGMENT_BYTES = 16;
/** The one defined flag bit; §5.2.6.2 makes every other bit an UNSUPP request. */
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

/** §5.2.4 config fields of discard and write-zeroes (virtio 1.1 and later), byte offsets in the config. */
export const BLK_CONFIG_MAX_DISCARD_SECTORS = 36;
export const BLK_CONFIG_MAX_DISCARD_SEG = 40;
export const BLK_CONFIG_DISCARD_SECTOR_ALIGNMENT = 44;
export const BLK_CONFIG_MAX_WRITE_ZEROES_SECTORS = 48;
export const BLK_CONFIG_MAX_WRITE_ZEROES_SEG = 52;
export const BLK_CONFIG_WRITE_ZEROES_MAY_UNMAP = 56;
/** Segments in one discard or write-zeroes request: Linux sends at most 256 (MAX_DISCARD_SEGMENTS), and
 *  this bounds the bytes a request copies out of the guest (4 KiB). */
export const BLK_MAX_SEGMENTS = 256;
/** Sectors in one segment (2 GiB less a sector, as QEMU's BDRV_REQUEST_MAX_SECTORS). */
export const BLK_MAX_SEGMENT_SECTORS = 0x3f_ffff;
/** The guest is told to align discards to 4 KiB: host filesystems free whole blocks of that size. */
const DISCARD_SECTOR_ALIGNMENT = 8;

const SECTOR = 512;
/** Header of every request: type, reserved, sector (§5.2.6 struct virtio_blk_req). */
const HEADER_BYTES = 16;
/** Data moves between the disk and guest buffers through a bounce buffer of at most this many bytes, so
 *  a request's host memory stays small however large (and however scattered) the guest made it. */
const CHUNK_BYTES = 256 * 1024;
const MAX_SPARE_BOUNCES = 8;

export interface VirtioBlkState extends ComponentState {
  readonly version: 1;
  /** Heads of requests handed to the host disk and not yet completed; re-issued after a load. */
  readonly inflight: readonly number[];
}

/** One request in progress: its chain and how far the transfer has got. */
class BlkRequest {
  readonly chain: DescriptorChain;
  type = 0;
  /** Byte offset on the disk, bytes to move, bytes moved. */
  offset = 0;
  total = 0;
  pos = 0;
  /** Bytes in the chunk (or discard/write-zeroes segment) currently with the backend. */
  chunk = 0;
  /** Discard/write-zeroes: the segments copied out of the guest (made on first use), and the unmap flag of
   *  the segment with the backend. `total` counts segments and `pos` the next one. */
  segmentBytes: Uint8Array | null = null;
  segments: DataView | null = null;
  unmap = false;
  bounce: Uint8Array | null = null;
  /** Device generation the request belongs to; a reset or load makes it stale. */
  generation = 0;
  /** A backend call is outstanding (guards against a backend completing twice). */
  waiting = false;
  /** The backend call has not returned yet (its completion ran synchronously inside it). */
  inCall = false;
  syncDone = false;
  syncError: string | null = null;
  /** The one completion callback of this request object, made once rather than per backend call. */
  readonly done: (error: string | null) => void;

  constructor(blk: VirtioBlk, ram: DescriptorChain["ram"]) {
    this.chain = new DescriptorChain(ram);
    this.done = (error) => blk.completed(this, error);
  }
}

export class VirtioBlk implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly featuresLo: number;
  readonly featuresHi = 0;
  readonly queueMaxSizes = [VIRTQUEUE_MAX_SIZE];
  private transport!: VirtioTransport;
  private readonly config = new Uint8Array(64);
  private readonly serial = new Uint8Array(VIRTIO_BLK_ID_BYTES);
  private readonly header = new Uint8Array(HEADER_BYTES);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly statusByte = new Uint8Array(1);
  private readonly capacity: number;
  /** The backend offers these (and is writable): the features are offered and the requests served. */
  private readonly canDiscard: boolean;
  private readonly canWriteZeroes: boolean;
  private generation = 0;
  /** In-flight requests by head index; a head can be in flight only once. */
  private readonly inflight: (BlkRequest | null)[] = new Array(VIRTQUEUE_MAX_SIZE).fill(null);
  private readonly free: BlkRequest[] = [];
  /** Spare bounce buffers, so a busy disk does not allocate one per request. */
  private readonly bounces: Uint8Array[] = [];
  /** Heads loaded as in flight and not re-issued yet (they still count as in flight for saveState). */
  private restoring: number[] = [];

  /** @param serial the id GET_ID returns (ASCII, at most 20 bytes are used) */
  constructor(
    private readonly backend: BlockBackend,
    options: { serial?: string } = {},
  ) {
    this.capacity = Math.floor(backend.sizeBytes / SECTOR);
    this.canDiscard = !backend.readOnly && typeof backend.discard === "function";
    this.canWriteZeroes = !backend.readOnly && typeof backend.writeZeroes === "function";
    this.featuresLo =
      (1 << VIRTIO_BLK_F_SEG_MAX) |
      (1 << VIRTIO_BLK_F_BLK_SIZE) |
      (1 << VIRTIO_BLK_F_FLUSH) |
      (backend.readOnly ? 1 << VIRTIO_BLK_F_RO : 0) |
      (this.canDiscard ? 1 << VIRTIO_BLK_F_DISCARD : 0) |
      (this.canWriteZeroes ? 1 << VIRTIO_BLK_F_WRITE_ZEROES : 0);
    // §5.2.4 struct virtio_blk_config: capacity (le64, in 512-byte sectors) at 0, seg_max at 12,
    // blk_size at 20.
    const v = new DataView(this.config.buffer);
    v.setUint32(0, this.capacity % 0x1_0000_0000, true);
    v.setUint32(4, Math.floor(this.capacity / 0x1_0000_0000), true);
    // Room for the header and status descriptors when the driver does not use indirect descriptors.
    v.setUint32(12, VIRTQUEUE_MAX_SIZE - 2, true);
    v.setUint32(20, SECTOR, true);
    // The features and these fields depend only on the backend, so a restored device offers what the saved
    // one did (VirtioMmio.loadState refuses a state whose driver accepted features no longer offered).
    if (this.canDiscard) {
      v.setUint32(BLK_CONFIG_MAX_DISCARD_SECTORS, BLK_MAX_SEGMENT_SECTORS, true);
      v.setUint32(BLK_CONFIG_MAX_DISCARD_SEG, BLK_MAX_SEGMENTS, true);
      v.setUint32(BLK_CONFIG_DISCARD_SECTOR_ALIGNMENT, DISCARD_SECTOR_ALIGNMENT, true);
    }
    if (this.canWriteZeroes) {
      v.setUint32(BLK_CONFIG_MAX_WRITE_ZEROES_SECTORS, BLK_MAX_SEGMENT_SECTORS, true);
      v.setUint32(BLK_CONFIG_MAX_WRITE_ZEROES_SEG, BLK_MAX_SEGMENTS, true);
      // §5.2.6.2: cleared "if and only if a write zeroes request cannot result in deallocating" sectors;
      // with unmap the backend may deallocate exactly when it can discard.
      this.config[BLK_CONFIG_WRITE_ZEROES_MAY_UNMAP] = this.canDiscard ? 1 : 0;
    }
    const id = options.serial ?? "";
    for (let i = 0; i < Math.min(id.length, VIRTIO_BLK_ID_BYTES); i++)
      this.serial[i] = id.charCodeAt(i) & 0x7f;
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  readConfig(offset: number, width: AccessWidth): number {
    return readConfigBytes(this.config, offset, width);
  }

  writeConfig(): void {
    // Every field this device offers is read-only (no VIRTIO_BLK_F_CONFIG_WCE).
  }

  activate(): void {}

  reset(): void {
    this.generation++;
    this.inflight.fill(null);
    this.restoring = [];
  }

  /** Requests handed to the backend and not completed yet (a host can wait for 0 before saving). */
  get inflightCount(): number {
    let n = this.restoring.length;
    for (const r of this.inflight) if (r !== null) n++;
    return n;
  }

  onNotify(index: number): void {
    if (index !== 0) return;
    const q = this.transport.queue(0);
    for (;;) {
      const req = this.free.pop() ?? new BlkRequest(this, this.transport.ram);
      if (!q.pop(req.chain)) {
        this.free.push(req);
        return;
      }
      if (!this.admit(req)) return;
      this.start(req);
    }
  }

  /** Marks the request's head in flight, refusing a head that already is. */
  private admit(req: BlkRequest): boolean {
    const head = req.chain.head;
    // Guest-controlled: the head index. Offering a chain that is still in flight would let the guest grow
    // the number of outstanding host requests without bound.
    if (this.inflight[head] !== null) {
      this.free.push(req);
      this.transport.deviceError(`request ${head} offered again while still in flight`);
      return false;
    }
    this.inflight[head] = req;
    req.generation = this.generation;
    return true;
  }

  private start(req: BlkRequest): void {
    const chain = req.chain;
    // Guest-controlled: the chain's shape. §5.2.6.2: a request has a 16-byte header the device reads and
    // a status byte it writes, in whatever descriptors the driver chose.
    if (chain.readTotal < HEADER_BYTES || chain.writeTotal < 1) {
      this.inflight[chain.head] = null;
      this.free.push(req);
      this.transport.deviceError("block request without header or status byte");
      return;
    }
    chain.copyFrom(0, this.header, 0, HEADER_BYTES);
    req.type = this.headerView.getUint32(0, true);
    const sectorLo = this.headerView.getUint32(8, true);
    const sectorHi = this.headerView.getUint32(12, true);
    switch (req.type) {
      case VIRTIO_BLK_T_IN:
      case VIRTIO_BLK_T_OUT: {
        const len = req.type === VIRTIO_BLK_T_IN ? chain.writeTotal - 1 : chain.readTotal - HEADER_BYTES;
        // Guest-controlled: sector and length. Whole sectors inside the disk, else an I/O error for the guest.
        const sector = sectorHi * 0x1_0000_0000 + sectorLo;
        if (
          (req.type === VIRTIO_BLK_T_OUT && this.backend.readOnly) ||
          len % SECTOR !== 0 ||
          sector > this.capacity ||
          len / SECTOR > this.capacity - sector
        ) {
          this.finish(req, VIRTIO_BLK_S_IOERR, 1);
          return;
        }
        req.offset = sector * SECTOR;
        req.total = len;
        req.pos = 0;
        req.bounce = len > 0 ? (this.bounces.pop() ?? new Uint8Array(CHUNK_BYTES)) : null;
        this.transfer(req);
        return;
      }
      case VIRTIO_BLK_T_FLUSH:
        this.call(req);
        if (req.syncDone) this.flushed(req, req.syncError);
        return;
      case VIRTIO_BLK_T_GET_ID: {
        const n = chain.copyTo(0, this.serial, 0, Math.min(VIRTIO_BLK_ID_BYTES, chain.writeTotal - 1));
        this.finish(req, VIRTIO_BLK_S_OK, n + 1);
        return;
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES: {
        const status = this.readSegments(req);
        if (status !== VIRTIO_BLK_S_OK) {
          this.finish(req, status, 1);
          return;
        }
        req.pos = 0;
        this.trim(req);
        return;
      }
      default:
        this.finish(req, VIRTIO_BLK_S_UNSUPP, 1);
    }
  }

  /**
   * Copies a discard or write-zeroes request's segments out of the guest and checks every one before any
   * reaches the backend; the status to answer with when one is refused.
   */
  private readSegments(req: BlkRequest): number {
    const discard = req.type === VIRTIO_BLK_T_DISCARD;
    // A request the driver could not have negotiated: §5.2.6.2 "unsupported" rather than an I/O error.
    if (
      !(discard ? this.canDiscard : this.canWriteZeroes) ||
      !this.transport.negotiated(discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES)
    )
      return VIRTIO_BLK_S_UNSUPP;
    // Guest-controlled: the number of segments, at least one and at most the max_*_seg the config offers.
    const bytes = req.chain.readTotal - HEADER_BYTES;
    if (
      bytes === 0 ||
      bytes % VIRTIO_BLK_SEGMENT_BYTES !== 0 ||
      bytes > BLK_MAX_SEGMENTS * VIRTIO_BLK_SEGMENT_BYTES
    )
      return VIRTIO_BLK_S_IOERR;
    if (req.segmentBytes === null) {
      req.segmentBytes = new Uint8Array(BLK_MAX_SEGMENTS * VIRTIO_BLK_SEGMENT_BYTES);
      req.segments = new DataView(req.segmentBytes.buffer);
    }
    const seg = req.segments!;
    req.chain.copyFrom(HEADER_BYTES, req.segmentBytes, 0, bytes);
    req.total = bytes / VIRTIO_BLK_SEGMENT_BYTES;
    // Guest-controlled: the flags. §5.2.6.2: "The device MUST set the status byte to VIRTIO_BLK_S_UNSUPP
    // for discard and write zeroes commands if any unknown flag is set. Furthermore, the device MUST set
    // the status byte to VIRTIO_BLK_S_UNSUPP for discard commands if the unmap flag is set."
    const allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    for (let i = 0; i < req.total; i++)
      if ((seg.getUint32(i * VIRTIO_BLK_SEGMENT_BYTES + 12, true) & ~allowed) !== 0)
        return VIRTIO_BLK_S_UNSUPP;
    // Guest-controlled: each range, whole sectors inside the disk and no longer than the config offers.
    for (let i = 0; i < req.total; i++) {
      const at = i * VIRTIO_BLK_SEGMENT_BYTES;
      const sector = seg.getUint32(at + 4, true) * 0x1_0000_0000 + seg.getUint32(at, true);
      const count = seg.getUint32(at + 8, true);
      if (count > BLK_MAX_SEGMENT_SECTORS || sector > this.capacity || count > this.capacity - sector)
        return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
  }

  /** Hands the request's segments to the backend one by one; loops while it completes synchronously. */
  private trim(req: BlkRequest): void {
    const seg = req.segments!;
    for (;;) {
      if (req.pos >= req.total) {
        this.finish(req, VIRTIO_BLK_S_OK, 1);
        return;
      }
      const at = req.pos * VIRTIO_BLK_SEGMENT_BYTES;
      req.offset = (seg.getUint32(at + 4, true) * 0x1_0000_0000 + seg.getUint32(at, true)) * SECTOR;
      req.chunk = seg.getUint32(at + 8, true) * SECTOR;
      req.unmap = (seg.getUint32(at + 12, true) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0;
      if (req.chunk === 0) {
        req.pos++;
        continue;
      }
      this.call(req);
      if (!req.syncDone) return;
      if (!this.segmentDone(req, req.syncError)) return;
    }
  }

  /** Accounts a finished segment; false when the request ended (with an error). */
  private segmentDone(req: BlkRequest, error: string | null): boolean {
    if (error !== null) {
      this.finish(req, VIRTIO_BLK_S_IOERR, 1);
      return false;
    }
    req.pos++;
    return true;
  }

  /** Moves the request's data chunk by chunk; loops while the backend completes synchronously. */
  private transfer(req: BlkRequest): void {
    for (;;) {
      if (req.pos >= req.total) {
        this.finish(req, VIRTIO_BLK_S_OK, req.type === VIRTIO_BLK_T_IN ? req.total + 1 : 1);
        return;
      }
      req.chunk = Math.min(CHUNK_BYTES, req.total - req.pos);
      if (req.type === VIRTIO_BLK_T_OUT)
        req.chain.copyFrom(HEADER_BYTES + req.pos, req.bounce!, 0, req.chunk);
      this.call(req);
      if (!req.syncDone) return;
      if (!this.chunkDone(req, req.syncError)) return;
    }
  }

  /** Issues the request's next backend operation, noting whether it completed inside the call. */
  private call(req: BlkRequest): void {
    req.waiting = true;
    req.inCall = true;
    req.syncDone = false;
    const buf = req.bounce?.subarray(0, req.chunk);
    if (req.type === VIRTIO_BLK_T_FLUSH) this.backend.flush(req.done);
    else if (req.type === VIRTIO_BLK_T_IN) this.backend.read(req.offset + req.pos, buf!, req.done);
    else if (req.type === VIRTIO_BLK_T_OUT) this.backend.write(req.offset + req.pos, buf!, req.done);
    else if (req.type === VIRTIO_BLK_T_DISCARD) this.backend.discard!(req.offset, req.chunk, req.done);
    else this.backend.writeZeroes!(req.offset, req.chunk, req.unmap, req.done);
    req.inCall = false;
  }

  /** The backend's completion for `req` (synchronous or later). */
  completed(req: BlkRequest, error: string | null): void {
    if (!req.waiting) return;
    req.waiting = false;
    if (req.inCall) {
      req.syncDone = true;
      req.syncError = error;
      return;
    }
    // A reset or load since the request started: the guest no longer expects it.
    if (req.generation !== this.generation) return;
    if (req.type === VIRTIO_BLK_T_FLUSH) this.flushed(req, error);
    else if (req.type === VIRTIO_BLK_T_DISCARD || req.type === VIRTIO_BLK_T_WRITE_ZEROES) {
      if (this.segmentDone(req, error)) this.trim(req);
    } else if (this.chunkDone(req, error)) this.transfer(req);
  }

  /** Accounts a finished chunk; false when the request ended (with an error). */
  private chunkDone(req: BlkRequest, error: string | null): boolean {
    if (error !== null) {
      this.finish(req, VIRTIO_BLK_S_IOERR, 1);
      return false;
    }
    if (req.type === VIRTIO_BLK_T_IN) req.chain.copyTo(req.pos, req.bounce!, 0, req.chunk);
    req.pos += req.chunk;
    return true;
  }

  private flushed(req: BlkRequest, error: string | null): void {
    this.finish(req, error === null ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, 1);
  }

  /** Writes the status byte, returns the chain to the used ring and notifies the driver. */
  private finish(req: BlkRequest, status: number, written: number): void {
    const chain = req.chain;
    this.statusByte[0] = status;
    chain.copyTo(chain.writeTotal - 1, this.statusByte, 0, 1);
    this.transport.queue(0).push(chain.head, written);
    this.inflight[chain.head] = null;
    // Only a request that finished returns its bounce buffer: a stale one's may still be in the backend.
    if (req.bounce !== null && this.bounces.length < MAX_SPARE_BOUNCES) this.bounces.push(req.bounce);
    req.bounce = null;
    this.free.push(req);
    this.transport.usedBuffers(0);
  }

  saveState(): VirtioBlkState {
    const inflight: number[] = [];
    this.inflight.forEach((r, head) => {
      if (r !== null) inflight.push(head);
    });
    for (const head of this.restoring) if (!inflight.includes(head)) inflight.push(head);
    return { version: 1, inflight: inflight.sort((x, y) => x - y) };
  }

  /**
   * Loads the state. Requests that were in flight when it was saved are issued again from their chains in
   * guest RAM, on a microtask, so that the rest of the machine (RAM included) is loaded first.
   */
  loadState(state: ComponentState): void {
    const s = state as VirtioBlkState;
    const c = "virtio-blk";
    checkState(typeof s === "object" && s !== null, c, "not an object");
    checkState(s.version === 1, c, `version ${s.version} is not 1`);
    checkState(Array.isArray(s.inflight), c, "inflight is not a list");
    checkState(
      s.inflight.every((h) => Number.isInteger(h) && h >= 0 && h < VIRTQUEUE_MAX_SIZE),
      c,
      "an inflight head is out of range",
    );
    checkState(new Set(s.inflight).size === s.inflight.length, c, "an inflight head repeats");
    this.generation++;
    this.inflight.fill(null);
    const generation = this.generation;
    this.restoring = [...s.inflight];
    if (this.restoring.length === 0) return;
    Promise.resolve().then(() => {
      if (generation !== this.generation) return;
      const heads = this.restoring;
      this.restoring = [];
      if (!this.transport.active) return;
      const q = this.transport.queue(0);
      for (const head of heads) {
        const req = this.free.pop() ?? new BlkRequest(this, this.transport.ram);
        if (!q.readChain(head, req.chain)) {
          this.free.push(req);
          return;
        }
        if (!this.admit(req)) return;
        this.start(req);
      }
    });
  }
}
