// A virtio-mmio slot with no device behind it, as QEMU's virt board leaves unused slots (Virtio 1.2 §4.2.2:
// "If DeviceID is zero (0x0) the driver MUST ignore the device"): the magic and version, DeviceID 0.

import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";

/** §4.2.2: MagicValue "0x74726976 (a Little Endian equivalent of the “virt” string)". */
const VIRTIO_MMIO_MAGIC_VALUE = 0x74726976;
const VIRTIO_MMIO_VERSION = 0x004;
const VIRTIO_MMIO_VENDOR_ID = 0x00c;
/** QEMU's vendor id ("QEMU"), which drivers never check but tools print. */
const VENDOR_ID_QEMU = 0x554d4551;

export class EmptyVirtioSlot implements MmioDevice {
  constructor(readonly id: string) {}

  read(offset: number, width: AccessWidth): number {
    if (width !== 4) return 0;
    if (offset === 0) return VIRTIO_MMIO_MAGIC_VALUE;
    if (offset === VIRTIO_MMIO_VERSION) return 2;
    if (offset === VIRTIO_MMIO_VENDOR_ID) return VENDOR_ID_QEMU;
    return 0;
  }

  write(_offset: number, _width: AccessWidth, _value: number): void {}
}
