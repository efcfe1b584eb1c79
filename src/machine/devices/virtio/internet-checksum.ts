// The Internet checksum (RFC 1071) as a network card's checksum offloads need it: completing a partial
// checksum the guest left in a frame (VIRTIO_NET_F_CSUM), and checking a received TCP or UDP segment's
// checksum over IPv4 or IPv6 (RFC 768, RFC 9293, RFC 8200 §8.1) so the guest may skip it.

/** Adds the big-endian 16-bit words of `b[start, end)` to `sum` (an odd last byte is padded with zero). */
export function sumWords(b: Uint8Array, start: number, end: number, sum: number): number {
  let i = start;
  // Folding every 2^15 words keeps the sum an exact small integer.
  while (i + 1 < end) {
    const stop = Math.min(end - 1, i + 65536);
    for (; i < stop; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (i < end) sum += b[i]! << 8;
  return sum;
}

/** Folds a sum to 16 bits. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum of `frame[start…]` (whose field at start + offset already holds
 * the pseudo-header's sum, as the driver leaves it) stored at start + offset. Returns false, changing
 * nothing, when the field does not lie inside the frame.
 */
export function completeChecksum(frame: Uint8Array, start: number, offset: number): boolean {
  // Guest-controlled: csum_start and csum_offset.
  const at = start + offset;
  if (start >= frame.length || at + 2 > frame.length) return false;
  let c = ~fold(sumWords(frame, start, frame.length, 0)) & 0xffff;
  // A UDP checksum of 0 means "none"; 0xffff is the same value in ones' complement.
  if (c === 0) c = 0xffff;
  frame[at] = c >>> 8;
  frame[at + 1] = c & 0xff;
  return true;
}

const ETH_HEADER = 14;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

/**
 * Whether `frame` is an Ethernet frame carrying an unfragmented IPv4 or IPv6 (no extension headers) TCP
 * or UDP segment whose checksum is correct. False for anything else, including a UDP datagram without a
 * checksum: the guest then checks (or skips) it itself.
 */
export function transportChecksumValid(frame: Uint8Array): boolean {
  if (frame.length < ETH_HEADER + 20) return false;
  const type = (frame[12]! << 8) | frame[13]!;
  let l4: number;
  let l4Len: number;
  let proto: number;
  let sum: number;
  if (type === ETHERTYPE_IPV4) {
    const ip = ETH_HEADER;
    if (frame[ip]! >>> 4 !== 4) return false;
    const ihl = (frame[ip]! & 15) * 4;
    const total = (frame[ip + 2]! << 8) | frame[ip + 3]!;
    // More fragments, or a fragment offset: the segment is not all here.
    if (((frame[ip + 6]! & 0x3f) | frame[ip + 7]!) !== 0) return false;
    if (ihl < 20 || total < ihl || ip + total > frame.length) return false;
    proto = frame[ip + 9]!;
    l4 = ip + ihl;
    l4Len = total - ihl;
    sum = sumWords(frame, ip + 12, ip + 20, 0) + proto + l4Len;
  } else if (type === ETHERTYPE_IPV6) {
    const ip = ETH_HEADER;
    if (frame.length < ip + 40 || frame[ip]! >>> 4 !== 6) return false;
    l4Len = (frame[ip + 4]! << 8) | frame[ip + 5]!;
    proto = frame[ip + 6]!;
    l4 = ip + 40;
    if (l4 + l4Len > frame.length) return false;
    sum = sumWords(frame, ip + 8, ip + 40, 0) + proto + l4Len;
  } else return false;
  if (proto === IPPROTO_TCP) {
    if (l4Len < 20) return false;
  } else if (proto === IPPROTO_UDP) {
    if (l4Len < 8) return false;
    if (frame[l4 + 6] === 0 && frame[l4 + 7] === 0) return false;
  } else return false;
  return fold(sumWords(frame, l4, l4 + l4Len, sum)) === 0xffff;
}
