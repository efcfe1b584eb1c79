// Where a network card's frames go on the host: a socket to passt, to a private network's switch, or a
// test's peer. Frames are whole Ethernet frames without a virtio header.

/** The host side of one network card, as the engine wires it to the card's NetworkPort. */
export interface FrameBackend {
  /** Guest → network. May drop the frame (and count it) when the backend's queue is full or it is down. */
  send(frame: Uint8Array): void;
  /** Network → guest. Returns false when the guest cannot take the frame now; the backend then keeps it
   *  and pauses until `resume`. Set by the engine. */
  onFrame: ((frame: Uint8Array) => boolean) | null;
  /** The guest has receive space again: deliver what is waiting and read more. */
  resume(): void;
  /** Stops for good: closes connections, cancels reconnects. */
  close(): Promise<void>;
}
