// Who a guest is: its hostname and /etc/machine-id (machine-id(5)), new for every VM and every clone, kept
// in its record (vm.json), and handed to the guest at boot (kernel command line, read by the image's rcS)
// and after a restore from memory (through the guest agent, with fresh randomness: docs/guest-agent.md).

import { createHash, randomBytes } from "node:crypto";
import { type GuestIdentity, MACHINE_ID_PATTERN, VM_NAME_PATTERN } from "../api/schemas/vm-schemas.ts";
import type { VmRecord } from "./vm-record.ts";

export type { GuestIdentity } from "../api/schemas/vm-schemas.ts";

/** A new identity: the hostname given (a VM's name) and a machine id of 128 random bits. */
export function newIdentity(hostname: string): GuestIdentity {
  return { hostname, machineId: randomBytes(16).toString("hex") };
}

/**
 * The identity of `record`. Records written before identities were kept have none: theirs is the VM's
 * name and its id's hex digits (a UUID without its dashes), stable across daemon restarts as a recorded
 * one is; an id that is not a UUID (none tsvm made) gives the first 32 hex digits of its SHA-256.
 */
export function identityOf(record: Pick<VmRecord, "id" | "name" | "identity">): GuestIdentity {
  if (record.identity) return record.identity;
  const hex = record.id.replaceAll("-", "").toLowerCase();
  const machineId = MACHINE_ID_PATTERN.test(hex)
    ? hex
    : createHash("sha256").update(record.id).digest("hex").slice(0, 32);
  return { hostname: record.name, machineId };
}

/** Checks an identity before it goes onto a kernel command line or into a shell command. */
function checkIdentity(identity: GuestIdentity): void {
  if (!VM_NAME_PATTERN.test(identity.hostname))
    throw new Error(`the hostname '${identity.hostname.slice(0, 80)}' is not an RFC 1035 label`);
  if (!MACHINE_ID_PATTERN.test(identity.machineId))
    throw new Error(`the machine id '${identity.machineId.slice(0, 80)}' is not 32 lowercase hex digits`);
}

/** Kernel command-line words the image's rcS turns into /etc/hostname and /etc/machine-id at boot. */
export function identityBootArgs(identity: GuestIdentity): string {
  checkIdentity(identity);
  return `tsvm.hostname=${identity.hostname} tsvm.machine_id=${identity.machineId}`;
}

/** Host random bytes handed to the guest's CRNG after a restore (the kernel's key is 32 bytes). */
export const RESEED_BYTES = 64;
/** Where the default image installs the program that reseeds the kernel's CRNG (images/default/tsvm-reseed.c). */
export const RESEED_PROGRAM = "/usr/sbin/tsvm-reseed";

/**
 * The shell command, run through the guest agent after a restore from memory, that gives the guest its
 * identity and fresh randomness: first the CRNG reseeded with `seed` (the most urgent: until then the
 * guest's random numbers are those of every other restore of the same image), then the hostname,
 * /etc/hostname and /etc/machine-id. Each part's status is printed on a line of its own
 * ("reseed N", "identity N"), so a failure of one is told apart from the other's.
 */
export function restoredIdentityCommand(identity: GuestIdentity, seed: Uint8Array): string {
  checkIdentity(identity);
  const hex = Buffer.from(seed).toString("hex");
  const { hostname, machineId } = identity;
  return [
    `echo ${hex} | ${RESEED_PROGRAM}; echo "reseed $?"`,
    `{ hostname ${hostname} && echo ${hostname} >/etc/hostname && echo ${machineId} >/etc/machine-id; }; echo "identity $?"`,
  ].join("\n");
}

/** What the guest reported for restoredIdentityCommand: each part's exit status, null when it said none. */
export interface RestoredIdentityResult {
  readonly reseedStatus: number | null;
  readonly identityStatus: number | null;
}

/** Reads the two status lines out of the command's output (the guest's output is not trusted: bounded, exact). */
export function parseRestoredIdentityOutput(stdout: string): RestoredIdentityResult {
  const status = (part: string) => {
    const m = new RegExp(`^${part} (\\d{1,3})$`, "m").exec(stdout.slice(0, 4096));
    return m ? Number(m[1]) : null;
  };
  return { reseedStatus: status("reseed"), identityStatus: status("identity") };
}
