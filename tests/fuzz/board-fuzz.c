// A bare-metal guest that attacks every device of the riscv-virt board from inside (board-fuzz.test.ts runs
// it): seeded random writes of every width to every MMIO window (boot ROM, sifive_test except its three
// commands, RTC, CLINT, PLIC, UART, the eight virtio-mmio slots) and to unmapped space, reads of random
// physical addresses, and each virtio device driven with malicious queues. It exits through sifive_test with
// a code derived from its seed; the test checks that code, and that a sentinel covering the rest of RAM is
// untouched.
//
// RAM layout (16 MiB at 0x80000000): the program from 0x80000000 (board-fuzz.ld); the arena at 0x80100000:
// rings and indirect tables in its first 256 KiB (written only by this program and by devices' used rings),
// buffers devices may write in the next 512 KiB; everything else is the sentinel, which no descriptor names.
// Every value this program writes into the ring area is an arena address, a length below 64 KiB or above RAM,
// or a number that is no RAM address, so no reinterpretation of ring bytes as descriptors names the sentinel.
#include <stdint.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

#define RAM_BASE 0x80000000UL
#define RAM_END (RAM_BASE + (16UL << 20))
#define RINGS 0x80100000UL
#define RINGS_SIZE 0x40000UL
#define BUFFERS (RINGS + RINGS_SIZE)
#define BUFFERS_SIZE 0x80000UL
#define BUFFER_MAX 0x10000UL

#define TEST_BASE 0x100000UL
#define FINISHER_FAIL 0x3333
#define FINISHER_PASS 0x5555
#define FINISHER_RESET 0x7777
#define VIRTIO_BASE 0x10001000UL
#define VIRTIO_SLOTS 8
#define MAX_QUEUES 8

// virtio-mmio registers (VIRTIO 1.2 §4.2.2) and status bits (§2.1).
#define DEVICE_ID 0x008
#define DEVICE_FEATURES 0x010
#define DEVICE_FEATURES_SEL 0x014
#define DRIVER_FEATURES 0x020
#define DRIVER_FEATURES_SEL 0x024
#define QUEUE_SEL 0x030
#define QUEUE_NUM_MAX 0x034
#define QUEUE_NUM 0x038
#define QUEUE_READY 0x044
#define QUEUE_NOTIFY 0x050
#define INTERRUPT_STATUS 0x060
#define INTERRUPT_ACK 0x064
#define STATUS 0x070
#define QUEUE_DESC_LOW 0x080
#define QUEUE_DESC_HIGH 0x084
#define QUEUE_AVAIL_LOW 0x090
#define QUEUE_AVAIL_HIGH 0x094
#define QUEUE_USED_LOW 0x0a0
#define QUEUE_USED_HIGH 0x0a4
#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64
#define S_FAILED 128
#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4

/* Written by the test before the first instruction runs. */
volatile struct {
  u64 seed;
  u64 ops;
} fuzz_params = {1, 3000};

/* Read by the test at the end. */
volatile struct {
  u64 ops_done;
  u64 faults;
  u64 used_seen;
  u64 queues_ready;
  u64 unexpected_cause;
  u64 unexpected_epc;
  u64 unexpected_tval;
} fuzz_report;

extern char _text_start[], _text_end[];

static u64 rs;
static volatile int expect_fault;

static u64 rnd(void) {
  rs ^= rs >> 12;
  rs ^= rs << 25;
  rs ^= rs >> 27;
  return rs * 0x2545F4914F6CDD1DULL;
}
static u32 below(u32 n) { return (u32)((rnd() >> 32) % n); }
static int chance(u32 percent) { return below(100) < percent; }

/* A 32-bit value a hostile driver likes, never a RAM address (see the layout note above). */
static u32 hostile32(void) {
  static const u32 edges[] = {0, 1, 2, 0xff, 0xffff, 0x10000, 0x7fffffff, 0xffffffff, 0xfffffff0};
  u32 v = chance(50) ? edges[below(sizeof edges / sizeof edges[0])] : (u32)rnd();
  if (v >= RAM_BASE && v < RAM_END) v ^= 0x40000000;
  return v;
}

static void finish(u32 code) {
  *(volatile u32 *)TEST_BASE = (code << 16) | FINISHER_FAIL;
  for (;;) {
  }
}

/* Every trap lands here (board-fuzz-start.S): an access fault the program provoked is skipped; anything
   else ends the run with code 0xEE and the trap in the report. */
u64 fuzz_trap(u64 cause, u64 epc, u64 tval) {
  if (expect_fault && cause >= 4 && cause <= 7) {
    fuzz_report.faults++;
    u16 insn = *(volatile u16 *)epc;
    return epc + ((insn & 3) == 3 ? 4 : 2);
  }
  fuzz_report.unexpected_cause = cause;
  fuzz_report.unexpected_epc = epc;
  fuzz_report.unexpected_tval = tval;
  finish(0xEE);
  return epc;
}

static u64 load(u64 addr, u32 width) {
  u64 v = 0;
  expect_fault = 1;
  switch (width) {
    case 1: v = *(volatile u8 *)addr; break;
    case 2: v = *(volatile u16 *)addr; break;
    case 4: v = *(volatile u32 *)addr; break;
    default: v = *(volatile u64 *)addr; break;
  }
  expect_fault = 0;
  return v;
}

static void store(u64 addr, u32 width, u64 v) {
  expect_fault = 1;
  switch (width) {
    case 1: *(volatile u8 *)addr = (u8)v; break;
    case 2: *(volatile u16 *)addr = (u16)v; break;
    case 4: *(volatile u32 *)addr = (u32)v; break;
    default: *(volatile u64 *)addr = v; break;
  }
  expect_fault = 0;
}

// ---- MMIO windows and unmapped space ----

struct window {
  u64 base, size;
  u32 hot[8];
};

static const struct window windows[] = {
  {0x1000, 0xf000, {0, 4, 0x20, 0x100}},                                  /* boot ROM */
  {TEST_BASE, 0x1000, {0, 2, 4, 8}},                                      /* sifive_test */
  {0x101000, 0x1000, {0, 4, 8, 0xc, 0x10, 0x14, 0x18, 0x1c}},             /* goldfish RTC */
  {0x2000000, 0x10000, {0, 4, 0x4000, 0x4004, 0x4008, 0xbff8, 0xbffc}},   /* CLINT */
  {0xc000000, 0x600000, {4, 0x28, 0x1000, 0x2000, 0x2080, 0x200000, 0x200004, 0x201004}}, /* PLIC */
  {0x10000000, 0x100, {0, 1, 2, 3, 4, 5, 6, 7}},                          /* UART */
};
#define WINDOWS (sizeof windows / sizeof windows[0])

static const u32 width_of[] = {1, 2, 4, 8};

/* A device register address: a window's hot offset or anywhere in it, or one of the virtio slots. */
static u64 device_address(void) {
  if (chance(35)) {
    u64 slot = VIRTIO_BASE + 0x1000 * below(VIRTIO_SLOTS);
    return slot + (chance(80) ? 4 * below(0x48) : below(0x1000));
  }
  const struct window *w = &windows[below(WINDOWS)];
  u32 hot = w->hot[below(8)];
  return w->base + (chance(70) ? hot + (chance(80) ? 0 : below(4)) : below((u32)w->size));
}

/* An address nothing answers (or, for reads, anything at all). */
static u64 wild_address(int reads) {
  switch (below(reads ? 9 : 7)) {
    case 0: return below(0x1000);
    case 1: return 0x10000 + below(0xf0000);
    case 2: return 0x3000000 + below(0x1000000);
    case 3: return 0x10000100 + below(0xf00);
    case 4: return RAM_END + below(0x1000000);
    case 5: return (u64)below(0x10) << 32 | (u32)rnd();
    case 6: return rnd();
    case 7: return RAM_BASE + below(16u << 20); /* any RAM byte, sentinel included: reads only */
    default: return (u32)rnd();
  }
}

static void mmio_write(void) {
  u64 addr = chance(85) ? device_address() : wild_address(0);
  u32 width = width_of[below(4)];
  u64 v = chance(50) ? (u64)hostile32() << 32 | hostile32() : rnd();
  if (addr >= RAM_BASE && addr < RAM_END) return;
  // sifive_test's three commands would end or reset the machine: only the program's finish() may.
  if (addr >= TEST_BASE && addr < TEST_BASE + 4) {
    u16 low = (u16)(v >> (8 * (addr - TEST_BASE)));
    if (low == FINISHER_FAIL || low == FINISHER_PASS || low == FINISHER_RESET || (u16)v == FINISHER_FAIL ||
        (u16)v == FINISHER_PASS || (u16)v == FINISHER_RESET)
      v ^= 0x0101;
  }
  store(addr, width, v);
}

static void random_read(void) {
  u64 addr = chance(60) ? device_address() : wild_address(1);
  (void)load(addr, width_of[below(4)]);
}

// ---- virtio ----

struct vq {
  u64 desc, avail, used;
  u32 size;
  u16 avail_idx, used_seen;
  u8 ready, desc_ours, avail_ours, used_ours;
};

struct slot {
  u32 device_id;
  u32 queues;
  struct vq q[MAX_QUEUES];
};

static struct slot slots[VIRTIO_SLOTS];
static u64 buffer_next = BUFFERS;

static volatile u32 *vreg(u32 slot, u32 off) { return (volatile u32 *)(VIRTIO_BASE + 0x1000 * slot + off); }

static int in_rings(u64 a, u64 len) { return a >= RINGS && a + len <= RINGS + RINGS_SIZE; }

/* A ring area of `len` bytes: in the ring region with room for the largest ring, over the program's code (only
   for areas the device only reads), or unusable: not in RAM, above 4 GiB, misaligned, or where no ring fits. */
static u64 ring_address(int over_program, u64 len) {
  u64 text = (u64)_text_start, text_len = (u64)(_text_end - _text_start);
  u32 pick = below(100);
  if (pick < 80) return RINGS + 16 * below((RINGS_SIZE - 8192) / 16);
  // Wholly inside .text: the test has checked that no 16-byte slot there reads as a descriptor naming RAM.
  if (pick < 88 && over_program && len < text_len) return text + 16 * below((u32)((text_len - len) / 16));
  switch (below(5)) {
    case 0: return RAM_END - 4;
    case 1: return (u64)1 << 32 | RINGS;
    case 2: return RINGS + 2;
    case 3: return 0x10001000;
    default: return 0;
  }
}

/* A buffer: in the buffer region (with a length that stays in the arena), or not in RAM, or huge. */
static void buffer(u64 *addr, u32 *len) {
  static const u32 huge[] = {0xffffffff, 0xfffffff0, 0x7ffffff0, 0x10000000};
  if (chance(65)) {
    *len = chance(90) ? below(chance(50) ? 64 : BUFFER_MAX) : huge[below(4)];
    // Often flush against the end of the arena: a device writing one byte too many hits the sentinel.
    *addr = chance(30) && *len < BUFFER_MAX ? BUFFERS + BUFFERS_SIZE - *len : BUFFERS + below(BUFFERS_SIZE - BUFFER_MAX);
    return;
  }
  switch (below(5)) {
    case 0: *addr = RAM_END - 16; *len = 17 + below(64); return;
    case 1: *addr = below(0x80000000); *len = below(4096); return;
    case 2: *addr = RAM_END + below(1 << 20); *len = below(4096); return;
    case 3: *addr = (u64)(1 + below(4)) << 32 | BUFFERS; *len = below(64); return;
    default: /* huge, from the top of the buffer region: accepting it would run into the sentinel */
      *addr = BUFFERS + BUFFERS_SIZE - 16 * (1 + below(8));
      *len = huge[below(4)];
      return;
  }
}

static u64 alloc(u32 len) {
  if (buffer_next + len > BUFFERS + BUFFERS_SIZE) buffer_next = BUFFERS;
  u64 a = buffer_next;
  buffer_next = (buffer_next + len + 15) & ~15UL;
  return a;
}

static void write_desc(u64 table, u32 i, u64 addr, u32 len, u16 flags, u16 next) {
  volatile u8 *d = (volatile u8 *)(table + 16 * i);
  *(volatile u64 *)d = addr;
  *(volatile u32 *)(d + 8) = len;
  *(volatile u16 *)(d + 12) = flags;
  *(volatile u16 *)(d + 14) = next;
}

static void zero(u64 a, u64 len) {
  for (u64 i = 0; i < len; i++) *(volatile u8 *)(a + i) = 0;
}

/* Reset, negotiate (all features or a random set) and place every queue, then DRIVER_OK (usually). */
static void set_up(u32 s) {
  struct slot *sl = &slots[s];
  *vreg(s, STATUS) = 0;
  *vreg(s, STATUS) = S_ACKNOWLEDGE;
  *vreg(s, STATUS) = S_ACKNOWLEDGE | S_DRIVER;
  for (u32 sel = 0; sel < 2; sel++) {
    *vreg(s, DEVICE_FEATURES_SEL) = sel;
    u32 offered = *vreg(s, DEVICE_FEATURES);
    *vreg(s, DRIVER_FEATURES_SEL) = sel;
    *vreg(s, DRIVER_FEATURES) = chance(85) ? offered : hostile32();
  }
  *vreg(s, STATUS) = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK;
  sl->device_id = *vreg(s, DEVICE_ID);
  sl->queues = 0;
  for (u32 i = 0; i < MAX_QUEUES; i++) {
    struct vq *q = &sl->q[i];
    q->ready = 0;
    *vreg(s, QUEUE_SEL) = i;
    u32 max = *vreg(s, QUEUE_NUM_MAX);
    if (max == 0) break;
    sl->queues = i + 1;
    if (chance(10)) continue;
    static const u32 sizes[] = {1, 2, 4, 8, 16, 64, 256};
    u32 size = sizes[below(7)];
    if (size > max) size = max;
    if (chance(8)) size = hostile32();
    q->desc = ring_address(1, 16 * (u64)size);
    q->avail = ring_address(1, 6 + 2 * (u64)size);
    q->used = ring_address(0, 0);
    *vreg(s, QUEUE_NUM) = size;
    *vreg(s, QUEUE_DESC_LOW) = (u32)q->desc;
    *vreg(s, QUEUE_DESC_HIGH) = (u32)(q->desc >> 32);
    *vreg(s, QUEUE_AVAIL_LOW) = (u32)q->avail;
    *vreg(s, QUEUE_AVAIL_HIGH) = (u32)(q->avail >> 32);
    *vreg(s, QUEUE_USED_LOW) = (u32)q->used;
    *vreg(s, QUEUE_USED_HIGH) = (u32)(q->used >> 32);
    q->size = size;
    q->desc_ours = in_rings(q->desc, 16 * (u64)size);
    q->avail_ours = in_rings(q->avail, 6 + 2 * (u64)size);
    q->used_ours = in_rings(q->used, 6 + 8 * (u64)size);
    // Fresh rings, as a driver zeroes them, when they are ours; the device may start reading at READY.
    if (q->desc_ours) zero(q->desc, 16 * size);
    if (q->avail_ours) zero(q->avail, 6 + 2 * size);
    if (q->used_ours) zero(q->used, 6 + 8 * size);
    q->avail_idx = q->used_seen = 0;
    *vreg(s, QUEUE_READY) = 1;
    q->ready = *vreg(s, QUEUE_READY) == 1;
    fuzz_report.queues_ready += q->ready;
  }
  if (chance(90)) *vreg(s, STATUS) = *vreg(s, STATUS) | S_DRIVER_OK;
}

/* Status writes a driver must not make: DRIVER_OK without FEATURES_OK, clearing bits, NEEDS_RESET, FAILED. */
static void status_write(u32 s) {
  static const u32 bits[] = {S_ACKNOWLEDGE, S_DRIVER, S_FEATURES_OK, S_DRIVER_OK, S_NEEDS_RESET, S_FAILED};
  u32 v = 0;
  for (u32 i = 0; i < 6; i++)
    if (chance(40)) v |= bits[i];
  *vreg(s, STATUS) = chance(10) ? 0 : chance(10) ? hostile32() : v;
}

static void offer(struct vq *q, u16 head) {
  if (!q->avail_ours) return;
  volatile u16 *avail = (volatile u16 *)q->avail;
  avail[2 + q->avail_idx % q->size] = head;
  q->avail_idx++;
  avail[1] = q->avail_idx;
}

/* A chain the device is sure to walk: a plausible header, then buffers of every kind; loops, a readable
   buffer after a writable one, next indices out of range, indirect descriptors. */
static void hostile_chain(u32 s, u32 qi) {
  struct vq *q = &slots[s].q[qi];
  if (!q->desc_ours) {
    // The descriptor table is the program's code: the device reads instructions as descriptors.
    offer(q, below(q->size));
    *vreg(s, QUEUE_NOTIFY) = qi;
    return;
  }
  u64 hdr = alloc(16);
  static const u32 types[] = {0, 0, 1, 4, 8, 99};
  *(volatile u32 *)hdr = types[below(6)];
  *(volatile u32 *)(hdr + 4) = 0;
  *(volatile u64 *)(hdr + 8) = chance(70) ? below(130) : ~0UL;
  u32 n = 1 + below(5);
  u16 ids[5];
  for (u32 k = 0; k < n; k++) ids[k] = below(q->size);
  for (u32 k = 0; k < n; k++) {
    u64 addr;
    u32 len;
    if (k == 0) {
      addr = hdr;
      len = chance(80) ? 16 : 8;
    } else
      buffer(&addr, &len);
    int last = k == n - 1 && chance(70);
    u16 flags = (k > 0 && chance(85) ? F_WRITE : 0) | (last ? 0 : F_NEXT);
    if (chance(5)) flags = F_INDIRECT | (u16)below(8);
    write_desc(q->desc, ids[k], addr, len, flags, k == n - 1 ? below(q->size + 2) : ids[k + 1]);
  }
  offer(q, ids[0]);
  *vreg(s, QUEUE_NOTIFY) = qi;
}

/* An indirect table of hostile descriptors (sometimes naming itself) in the ring region. */
static void indirect_chain(u32 s, u32 qi) {
  struct vq *q = &slots[s].q[qi];
  if (!q->desc_ours) return;
  u32 n = 1 + below(6);
  u64 table = RINGS + 16 * below((RINGS_SIZE - 256) / 16);
  for (u32 k = 0; k < n; k++) {
    u64 addr;
    u32 len;
    if (chance(20)) {
      addr = table;
      len = 16 * n;
    } else
      buffer(&addr, &len);
    write_desc(table, k, addr, len, (u16)below(8), (u16)below(n + 2));
  }
  static const u32 lens[] = {16, 32, 48, 96, 0, 16 * 300, 0xfffffff0};
  u16 i = below(q->size);
  write_desc(q->desc, i, table, chance(50) ? 16 * n : lens[below(7)], F_INDIRECT | (chance(20) ? F_NEXT : 0),
             below(q->size));
  offer(q, i);
  *vreg(s, QUEUE_NOTIFY) = qi;
}

/* A well-formed request: a 16-byte header (a block request or a console control message), maybe data, then
   a writable buffer; so every device's request path runs to its end. */
static void good_request(u32 s, u32 qi) {
  struct vq *q = &slots[s].q[qi];
  if (!q->desc_ours || q->size < 3) return;
  u64 hdr = alloc(16);
  if (slots[s].device_id == 3) {
    // struct virtio_console_control: id, event (DEVICE_READY, PORT_READY, PORT_OPEN), value.
    static const u16 events[] = {0, 3, 6, 6, 99};
    *(volatile u32 *)hdr = below(3);
    *(volatile u16 *)(hdr + 4) = events[below(5)];
    *(volatile u16 *)(hdr + 6) = chance(80);
  } else {
    static const u32 types[] = {0, 1, 4, 8};
    *(volatile u32 *)hdr = types[below(4)];
    *(volatile u32 *)(hdr + 4) = 0;
    *(volatile u64 *)(hdr + 8) = below(128);
  }
  u16 head = below(q->size);
  u16 d1 = (head + 1) % q->size, d2 = (head + 2) % q->size;
  u32 data = 512 * below(3);
  u32 out = chance(50) ? 1 : 1 + 512 * below(3);
  u64 data_at = alloc(data + 1), out_at = chance(50) ? BUFFERS + BUFFERS_SIZE - out : alloc(out);
  if (data > 0) {
    write_desc(q->desc, head, hdr, 16, F_NEXT, d1);
    write_desc(q->desc, d1, data_at, data, F_NEXT, d2);
    write_desc(q->desc, d2, out_at, out, F_WRITE, 0);
  } else {
    write_desc(q->desc, head, hdr, 16, F_NEXT, d1);
    write_desc(q->desc, d1, out_at, out, F_WRITE, 0);
  }
  offer(q, head);
  *vreg(s, QUEUE_NOTIFY) = qi;
}

/* Used entries that appeared since the last look (counted for the report), then the interrupt acknowledged. */
static void reap(u32 s) {
  for (u32 i = 0; i < slots[s].queues; i++) {
    struct vq *q = &slots[s].q[i];
    if (!q->ready || !q->used_ours) continue;
    u16 idx = ((volatile u16 *)q->used)[1];
    u16 fresh = idx - q->used_seen;
    if (fresh <= q->size) fuzz_report.used_seen += fresh; /* else the ring was reset or overwritten */
    q->used_seen = idx;
  }
  *vreg(s, INTERRUPT_ACK) = *vreg(s, INTERRUPT_STATUS);
}

static void virtio_op(void) {
  u32 s = below(4); /* the three devices and one empty slot */
  struct slot *sl = &slots[s];
  u32 op = below(16);
  if (op == 0 || sl->queues == 0) {
    set_up(s);
    return;
  }
  // A device that gave up on the driver (DEVICE_NEEDS_RESET) is usually set up again, so that requests keep
  // reaching it.
  if ((*vreg(s, STATUS) & S_NEEDS_RESET) && chance(50)) {
    set_up(s);
    return;
  }
  u32 qi = below(sl->queues);
  struct vq *q = &sl->q[qi];
  if (op == 1) status_write(s);
  else if (op == 2) {
    // A queue register written while the queue is live, or QueueReady toggled.
    static const u32 regs[] = {QUEUE_SEL, QUEUE_NUM, QUEUE_READY, QUEUE_DESC_LOW, QUEUE_USED_HIGH, 0x100, 0x104};
    u32 reg = regs[below(7)];
    u32 v = hostile32();
    if (reg == QUEUE_DESC_LOW) v = (u32)ring_address(0, 0);
    if (reg == QUEUE_USED_HIGH) v = below(2);
    *vreg(s, reg) = v;
  } else if (op == 3) *vreg(s, QUEUE_NOTIFY) = chance(80) ? qi : hostile32();
  else if (!q->ready) set_up(s);
  else if (op <= 5) hostile_chain(s, qi);
  else if (op == 6) indirect_chain(s, qi);
  else if (op <= 10) good_request(s, qi);
  else if (op == 11 && q->avail_ours) {
    // Absurd available indices (far ahead, backwards) and heads out of range; never a RAM address.
    volatile u16 *avail = (volatile u16 *)q->avail;
    static const u16 jumps[] = {1, 2, 255, 256, 257, 0x7fff, 0xffff};
    avail[1] = q->avail_idx + jumps[below(7)];
    avail[2 + below(q->size)] = chance(50) ? below(q->size + 4) : 0x7fff;
    *vreg(s, QUEUE_NOTIFY) = qi;
  } else if (op == 12 && q->avail_ours) {
    ((volatile u16 *)q->avail)[0] = below(4); /* flags: NO_INTERRUPT and junk */
  } else if (op == 13 && q->desc_ours) {
    u64 addr;
    u32 len;
    buffer(&addr, &len);
    write_desc(q->desc, below(q->size), addr, len, (u16)below(8), chance(50) ? below(q->size + 4) : 0xffff);
  } else reap(s);
}

void fuzz_main(void) {
  u64 seed = fuzz_params.seed;
  rs = seed * 0x9E3779B97F4A7C15ULL + 1;
  u64 ops = fuzz_params.ops;
  for (u64 i = 0; i < ops; i++) {
    u32 kind = below(10);
    if (kind < 3) mmio_write();
    else if (kind < 5) random_read();
    else virtio_op();
    fuzz_report.ops_done = i + 1;
  }
  finish(0x20 + (u32)(seed % 0xc0));
}
