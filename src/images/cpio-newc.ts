// Writer of cpio archives in the "newc" format (SVR4 without CRC), the format Linux unpacks as an
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const NEWC_MAGIC = "070701";
const TRAILER = "TRAILER!!!";

/**
 * Builds an archive in memory. Every entry is owned by root (uid 0, gid 0) with one fixed mtime, so the
 * same tree always gives the same bytes whoever builds it, and device nodes need no privileges.
 */
export class CpioNewcWriter {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private nextIno = 1;
  private finished = false;

  /** `mtime` in seconds since the epoch, written into every entry. */
  constructor(private readonly mtime = 0) {}

  addDirectory(name: string, mode = 0o755): void {
    this.addEntry(name, S_IFDIR | (mode & 0o7777), 2, 0, 0, Buffer.alloc(0));
  }

  addFile(name: string, data: Uint8Array, mode = 0o644): void {
    this.addEntry(name, S_IFREG | (mode & 0o7777), 1, 0, 0, data);
  }

  addSymlink(name: string, target: string): void {
    this.addEntry(name, S_IFLNK | 0o777, 1, 0, 0, Buffer.from(target));
  }

  addCharDevice(name: string, mode: number, major: number, minor: number): void {
    this.addEntry(name, S_IFCHR | (mode & 0o7777), 1, major, minor, Buffer.alloc(0));
  }

  /**
   * Adds everything under `dir` (not `dir` itself) below `prefix`, parents before children, names sorted;
   * directories, regular files and symbolic links keep their permission bits.
   */
  addTree(dir: string, prefix = ""): void {
    for (const entry of readdirSync(dir).sort()) {
      const path = join(dir, entry);
      const name = prefix === "" ? entry : `${prefix}/${entry}`;
      const stat = lstatSync(path);
      if (stat.isDirectory()) {
        this.addDirectory(name, stat.mode);
        this.addTree(path, name);
      } else if (stat.isSymbolicLink()) {
        this.addSymlink(name, readlinkSync(path));
      } else if (stat.isFile()) {
        this.addFile(name, readFileSync(path), stat.mode);
      } else {
        throw new Error(`cannot put ${path} into a cpio archive: not a directory, file or symbolic link`);
      }
    }
  }

  /** The whole archive, trailer included; the writer cannot be used afterwards. */
  finish(): Buffer {
    if (!this.finished) {
      this.addEntry(TRAILER, 0, 1, 0, 0, Buffer.alloc(0), 0);
      this.finished = true;
    }
    return Buffer.concat(this.chunks, this.size);
  }

  private addEntry(
    name: string,
    mode: number,
    nlink: number,
    rdevMajor: number,
    rdevMinor: number,
    data: Uint8Array,
    ino = this.nextIno++,
  ): void {
    if (this.finished) throw new Error("cpio archive already finished");
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [
      ino,
      mode,
      0, // uid
      0, // gid
      nlink,
      this.mtime,
      data.length,
      0, // devmajor
      0, // devminor
      rdevMajor,
      rdevMinor,
      nameBytes.length,
      0, // check: always 0 in newc ("070701"); only "070702" carries a checksum
    ];
    const header = NEWC_MAGIC + fields.map((f) => f.toString(16).padStart(8, "0")).join("");
    // "The pathname is followed by NUL bytes so that the total size of the fixed header plus pathname is
    // a multiple of four. Likewise, the file data is padded to a multiple of four bytes."
    this.push(Buffer.from(header, "ascii"));
    this.push(nameBytes);
    this.pad();
    this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.pad();
  }

  private push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  private pad(): void {
    const rest = (4 - (this.size % 4)) % 4;
    if (rest !== 0) this.push(Buffer.alloc(rest));
  }
}
