// Builds a flattened device tree blob (DTB, format version 17) as the Devicetree Specification v0.4, chapter 5
// ("Flattened Devicetree (DTB) Format") defines it: header, memory reservation block, structure block, strings.

import { MachineError } from "../base/machine-error.ts";

/** Devicetree Specification §5.2: "This field shall contain the value 0xd00dfeed (big-endian)". */
const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 0x1;
const FDT_END_NODE = 0x2;
const FDT_PROP = 0x3;
const FDT_END = 0x9;
const FDT_VERSION = 17;
/** §5.2: version 17 is backwards compatible with version 16. */
const FDT_LAST_COMP_VERSION = 16;
const FDT_HEADER_SIZE = 40;

/** Encodes a string as UTF-8 (the machine layer has no TextEncoder: no DOM, no Node). */
function utf8(s: string): number[] {
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return out;
}

function cellsOf64(value: number): [number, number] {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new MachineError("bad-fdt-value", `device tree value ${value} is not a 64-bit unsigned integer`);
  return [Math.floor(value / 0x1_0000_0000) >>> 0, value >>> 0];
}

/** One node of the tree; properties keep the order they were set in (dtc shows them in that order). */
export class FdtNode {
  readonly children: FdtNode[] = [];
  readonly props = new Map<string, Uint8Array>();

  constructor(readonly name: string) {}

  /** Adds (and returns) a child node, e.g. `soc.child("uart@10000000")`. */
  child(name: string): FdtNode {
    if (this.children.some((c) => c.name === name))
      throw new MachineError(
        "bad-fdt-node",
        `device tree node '${name}' already exists under '${this.name}'`,
      );
    const node = new FdtNode(name);
    this.children.push(node);
    return node;
  }

  /** The child named `name`, if any. */
  find(name: string): FdtNode | undefined {
    return this.children.find((c) => c.name === name);
  }

  /** Raw property value. */
  bytes(name: string, value: Uint8Array): this {
    this.props.set(name, value.slice());
    return this;
  }

  /** A property with no value (a boolean such as `interrupt-controller`). */
  empty(name: string): this {
    return this.bytes(name, new Uint8Array(0));
  }

  /** A list of 32-bit big-endian cells (numbers, phandles, or both mixed as `interrupts-extended` has). */
  u32(name: string, ...cells: number[]): this {
    const out = new Uint8Array(cells.length * 4);
    const view = new DataView(out.buffer);
    cells.forEach((c, i) => {
      if (!Number.isInteger(c) || c < -0x8000_0000 || c > 0xffff_ffff)
        throw new MachineError("bad-fdt-value", `device tree cell ${c} of '${name}' is not a 32-bit integer`);
      view.setUint32(i * 4, c >>> 0);
    });
    this.props.set(name, out);
    return this;
  }

  /** A list of 64-bit values, each as two cells (high first), e.g. `reg` with #address-cells = #size-cells = 2. */
  u64(name: string, ...values: number[]): this {
    return this.u32(name, ...values.flatMap(cellsOf64));
  }

  /** A NUL-terminated string. */
  string(name: string, value: string): this {
    return this.strings(name, [value]);
  }

  /** A string list (each NUL-terminated), as `compatible` uses. */
  strings(name: string, values: readonly string[]): this {
    const bytes: number[] = [];
    for (const v of values) {
      if (v.includes("\0"))
        throw new MachineError("bad-fdt-value", `device tree string of '${name}' contains a NUL byte`);
      bytes.push(...utf8(v), 0);
    }
    this.props.set(name, Uint8Array.from(bytes));
    return this;
  }
}

/** A device tree under construction: a root node, a phandle allocator and the memory reservation map. */
export class FdtBuilder {
  readonly root = new FdtNode("");
  private nextPhandle = 1;
  private readonly reservations: Array<[address: number, size: number]> = [];

  /** bootCpuId goes into the header's boot_cpuid_phys field. */
  constructor(private readonly bootCpuId = 0) {}

  /** A fresh phandle; give it to a node with `node.u32("phandle", p)` and reference it from others. */
  allocPhandle(): number {
    return this.nextPhandle++;
  }

  /** Gives `node` a fresh phandle property and returns the phandle. */
  phandleOf(node: FdtNode): number {
    const p = this.allocPhandle();
    node.u32("phandle", p);
    return p;
  }

  /** Adds an entry to the memory reservation block (§5.3). */
  reserve(address: number, size: number): void {
    cellsOf64(address);
    cellsOf64(size);
    this.reservations.push([address, size]);
  }

  /** Serializes the tree. */
  build(): Uint8Array {
    const strings: number[] = [];
    const stringOffsets = new Map<string, number>();
    const nameOffset = (name: string): number => {
      let off = stringOffsets.get(name);
      if (off === undefined) {
        off = strings.length;
        strings.push(...utf8(name), 0);
        stringOffsets.set(name, off);
      }
      return off;
    };

    const struct: number[] = [];
    const pushU32 = (v: number): void => {
      struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    };
    const align4 = (): void => {
      while (struct.length % 4 !== 0) struct.push(0);
    };
    const emit = (node: FdtNode): void => {
      pushU32(FDT_BEGIN_NODE);
      struct.push(...utf8(node.name), 0);
      align4();
      for (const [name, value] of node.props) {
        pushU32(FDT_PROP);
        pushU32(value.length);
        pushU32(nameOffset(name));
        for (const b of value) struct.push(b);
        align4();
      }
      for (const c of node.children) emit(c);
      pushU32(FDT_END_NODE);
    };
    emit(this.root);
    pushU32(FDT_END);

    // §5.1: the reservation block is 8-byte aligned, the structure block 4-byte aligned.
    const offRsvmap = FDT_HEADER_SIZE;
    const rsvSize = (this.reservations.length + 1) * 16;
    const offStruct = offRsvmap + rsvSize;
    const offStrings = offStruct + struct.length;
    const total = offStrings + strings.length;
    const out = new Uint8Array((total + 7) & ~7);
    const view = new DataView(out.buffer);
    const header = [
      FDT_MAGIC,
      out.length,
      offStruct,
      offStrings,
      offRsvmap,
      FDT_VERSION,
      FDT_LAST_COMP_VERSION,
      this.bootCpuId,
      strings.length,
      struct.length,
    ];
    for (let i = 0; i < header.length; i++) view.setUint32(i * 4, header[i]!);
    this.reservations.forEach(([address, size], i) => {
      const [ah, al] = cellsOf64(address);
      const [sh, sl] = cellsOf64(size);
      view.setUint32(offRsvmap + i * 16, ah);
      view.setUint32(offRsvmap + i * 16 + 4, al);
      view.setUint32(offRsvmap + i * 16 + 8, sh);
      view.setUint32(offRsvmap + i * 16 + 12, sl);
    });
    out.set(struct, offStruct);
    out.set(strings, offStrings);
    return out;
  }
}
