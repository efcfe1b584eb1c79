// What the machine asks of its host. The machine layer never touches files, sockets or timers itself:
// a host (the Node engine, a browser page, a test) implements these ports and hands them to the board.

/** Monotonic time. */
export interface Clock {
  /** Milliseconds since an arbitrary origin, fractional, never decreasing (performance.now()). */
  nowMs(): number;
}

/** Completion of an asynchronous host operation: null on success, else a message for the log. */
export type Completion = (error: string | null) => void;

/** A disk. Offsets and lengths are multiples of 512. `done` may run synchronously or later. */
export interface BlockBackend {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  read(offset: number, dst: Uint8Array, done: Completion): void;
  write(offset: number, src: Uint8Array, done: Completion): void;
  flush(done: Completion): void;
  /**
   * The guest no longer needs the range: the host may free its storage. Afterwards the range's contents
   * are unspecified, but reads of it still succeed. A disk without it is offered no discard.
   */
  discard?(offset: number, length: number, done: Completion): void;
  /**
   * Afterwards the range reads as zeros. With `unmap` the host may free its storage to get there (as
   * discard); without it the storage stays allocated. A disk without it is offered no write-zeroes.
   */
  writeZeroes?(offset: number, length: number, unmap: boolean, done: Completion): void;
}

/** Bytes the guest sends out of a character device (UART, virtio-console port). */
export interface CharSink {
  write(bytes: Uint8Array): void;
}

/** Where a network card's outgoing frames go (Ethernet frames, no virtio header). The frame is a view
 *  valid during the call only: a port that keeps it copies it. */
export interface NetworkPort {
  send(frame: Uint8Array): void;
}

/** Random bytes for virtio-rng (crypto.getRandomValues in both Node and browsers). */
export interface EntropySource {
  fill(dst: Uint8Array): void;
}
