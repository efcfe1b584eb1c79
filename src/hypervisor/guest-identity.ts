// Who a guest is: its hostname and /etc/machine-id (machine-id(5)), new for every VM and every clone, kept
// in its record (vm.json), and handed to the guest at boot (kernel command line, read by the image's rcS)
// and after a restore from memory (through the guest agent, with fresh randomness: docs/guest-agent.md).

import { createHash, randomBytes } from "node:crypto";
import {
  type GuestIdentity,
  MAC_PATTERN,
  MACHINE_ID_PATTERN,
  MAX_NETWORK_INTERFACES,
  VM_NAME_PATTERN,
} from "../api/schemas/vm-schemas.ts";
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
 * /etc/hostname and /etc/machine-id, then each network card (`macs[N]` is ethN's): its MAC set (a clone's
 * differs from the saved guest's) and its DHCP client restarted, as rcS starts it, so the card asks for a
 * lease under its MAC from the network now behind it. Each part's status is printed on a line of its own
 * ("reseed N", "identity N", "net I N"), so a failure of one is told apart from the others'.
 */
export function restoredIdentityCommand(
  identity: GuestIdentity,
  seed: Uint8Array,
  macs: readonly string[] = [],
): string {
  checkIdentity(identity);
  if (macs.length > MAX_NETWORK_INTERFACES || !macs.every((m) => MAC_PATTERN.test(m)))
    throw new Error(`the MAC addresses ${macs.join(", ").slice(0, 200)} are malformed`);
  const hex = Buffer.from(seed).toString("hex");
  const { hostname, machineId } = identity;
  return [
    `echo ${hex} | ${RESEED_PROGRAM}; echo "reseed $?"`,
    `{ hostname ${hostname} && echo ${hostname} >/etc/hostname && echo ${machineId} >/etc/machine-id; }; echo "identity $?"`,
    ...macs.map((mac, i) => cardCommand(`eth${i}`, mac, hostname, i)),
  ].join("\n");
}

/**
 * Gives card `dev` its MAC and a new DHCP client (rcS's command line), in the background: the agent runs
 * one command at a time, and waiting for the old client (up to 20 s) must not hold every later command.
 * (`ip link set` once hung in restored guests: a restored hart lost its due timer interrupt, fixed in the
 * board's loadState; docs/networking.md.) The MAC is changed with the card up (virtio-net allows it live). The old client is found by its
 * command line (busybox writes no pid file without FEATURE_PIDFILE) and waited for, so two clients never
 * answer for one card. The status printed ("net N 0") says the job started.
 */
function cardCommand(dev: string, mac: string, hostname: string, index: number): string {
  return [
    `( old=; for p in $(pidof udhcpc); do case " $(tr '\\0' ' ' </proc/$p/cmdline 2>/dev/null)" in *" -i ${dev} "*) old="$old $p" ;; esac; done;`,
    `if [ -n "$old" ]; then kill $old; i=0; while kill -0 $old && [ $i -lt 20 ]; do i=$((i+1)); sleep 1; done; fi;`,
    `ip link set dev ${dev} address ${mac} && ip link set dev ${dev} up &&`,
    `exec udhcpc -b -S -t 5 -T 2 -A 3 -i ${dev} -x hostname:${hostname} -p /run/udhcpc.${dev}.pid -s /usr/share/udhcpc/default.script ) </dev/null >/dev/null 2>&1 & echo "net ${index} $?"`,
  ].join(" ");
}

/** What the guest reported for restoredIdentityCommand: each part's exit status, null when it said none. */
export interface RestoredIdentityResult {
  readonly reseedStatus: number | null;
  readonly identityStatus: number | null;
  /** Per card (index = ethN): the status of setting its MAC and restarting its DHCP client. */
  readonly networkStatuses: readonly (number | null)[];
}

/** Reads the two status lines out of the command's output (the guest's output is not trusted: bounded, exact). */
export function parseRestoredIdentityOutput(stdout: string, cards = 0): RestoredIdentityResult {
  const status = (part: string) => {
    const m = new RegExp(`^${part} (\\d{1,3})$`, "m").exec(stdout.slice(0, 4096));
    return m ? Number(m[1]) : null;
  };
  return {
    reseedStatus: status("reseed"),
    identityStatus: status("identity"),
    networkStatuses: Array.from({ length: Math.min(cards, MAX_NETWORK_INTERFACES) }, (_, i) =>
      status(`net ${i}`),
    ),
  };
}
