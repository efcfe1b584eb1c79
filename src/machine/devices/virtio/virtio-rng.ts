// A virtio entropy device (VIRTIO 1.2 §5.4): fills each device-writable buffer the driver offers with
// random bytes from the host's EntropySource.

import type { AccessWidth } from "../../bus/mmio-device.ts";
import type { EntropySource } from "../../ports.ts";
import { type ComponentState, checkState } from "../../state/stateful.ts";
import type { VirtioDevice, VirtioTransport } from "./virtio-device.ts";
import { VIRTIO_ID_ENTROPY } from "./virtio-spec.ts";
import { DescriptorChain } from "./virtqueue.ts";

/** Bytes given per request at most: the device may return fewer than asked (§5.4.6), and
 *  crypto.getRandomValues refuses more than 65536 at once. */
export const VIRTIO_RNG_MAX_BYTES = 65536;
const QUEUE_SIZE = 64;

export interface VirtioRngState extends ComponentState {
  readonly version: 1;
}

export class VirtioRng implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_ENTROPY;
  readonly featuresLo = 0;
  readonly featuresHi = 0;
  readonly queueMaxSizes = [QUEUE_SIZE];
  private transport!: VirtioTransport;
  private chain!: DescriptorChain;

  constructor(private readonly entropy: EntropySource) {}

  attach(transport: VirtioTransport): void {
    this.transport = transport;
    this.chain = new DescriptorChain(transport.ram, QUEUE_SIZE);
  }

  readConfig(_offset: number, _width: AccessWidth): number {
    return 0;
  }

  writeConfig(): void {}

  activate(): void {}

  reset(): void {}

  onNotify(index: number): void {
    if (index !== 0) return;
    const q = this.transport.queue(0);
    const chain = this.chain;
    const u8 = this.transport.ram.u8;
    let any = false;
    while (q.pop(chain)) {
      // Guest-controlled: buffer sizes; at most VIRTIO_RNG_MAX_BYTES per request however large the buffers.
      let left = VIRTIO_RNG_MAX_BYTES;
      for (let i = 0; i < chain.writeCount && left > 0; i++) {
        const n = Math.min(chain.writeLen[i]!, left);
        const off = chain.writeOff[i]!;
        if (n > 0) {
          this.entropy.fill(u8.subarray(off, off + n));
          this.transport.ram.noteWrite(off, n);
        }
        left -= n;
      }
      q.push(chain.head, VIRTIO_RNG_MAX_BYTES - left);
      any = true;
    }
    if (any) this.transport.usedBuffers(0);
  }

  saveState(): VirtioRngState {
    return { version: 1 };
  }

  loadState(state: ComponentState): void {
    checkState(typeof state === "object" && state !== null, "virtio-rng", "not an object");
    checkState(state.version === 1, "virtio-rng", `version ${state.version} is not 1`);
  }
}
