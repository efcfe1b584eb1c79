// Errors of the disk-image code (qcow2 and raw disks): each carries a stable code and a message that names
// the file and what is wrong with it, written once as the line a user reads.

export type Qcow2ErrorCode =
  /** The file is not a disk image we can use safely: hostile or corrupt metadata, an unsupported feature. */
  | "bad-disk-image"
  /** A file named as a disk, or one its backing chain names, does not exist or cannot be opened. */
  | "disk-not-found"
  /** createQcow2 or convertDisk was asked to make a file that already exists. */
  | "disk-exists"
  /** A bad argument from the caller (size, backing name), not a bad file. */
  | "bad-disk-request"
  /** The host's read, write or sync failed (disk full, I/O error). */
  | "disk-io-failed";

export class Qcow2Error extends Error {
  constructor(
    readonly code: Qcow2ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "Qcow2Error";
  }
}

/** The message of any failure, for a BlockBackend completion: ours as written, others with their cause. */
export function failureMessage(err: unknown, path: string): string {
  if (err instanceof Qcow2Error) return err.message;
  return `disk image ${path}: ${err instanceof Error ? err.message : String(err)}`;
}
