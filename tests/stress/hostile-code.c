// A bare-metal guest on two harts doing what issue 11 calls bad input for a machine that compiles code
// (hostile-code.test.ts runs it on tsvm with the block compiler off, on, and eager, and on QEMU):
//   - smc-call: a hot function in RAM rewritten between calls (with fence.i), again and again;
//   - self-patch: a loop rewriting its own next instruction every iteration;
//   - store-storm: a loop whose instructions are nearly all stores into the page it runs from;
//   - jit-spray: thousands of distinct functions written and run, more than any code cache should keep;
//   - dma-code: virtio-blk reads code over a hot function's page while the other hart runs it, and each
//     hart runs the new code after its fence.i;
//   - smc-cross: hart 1 rewrites a function hart 0 keeps running hot, and hart 0 runs the new one after its
//     fence.i;
//   - lrsc-lock: both harts take a spinlock made of lr.w.aq/sc.w.rl around a two-word update;
//   - lrsc-spin: one hart spins on lr.w until the other hart's plain store, then both hammer one word,
//     one with lr.d/sc.d and the other with amoadd.d;
//   - lrsc-dma: a reservation on a word virtio-blk then overwrites: the sc.w must fail.
// Hart 0 prints "NAME VALUE ok|BAD" per check on the UART (the expected values are computed here by plain
// code) and powers off through sifive_test: 0x5555 when every check held, else FAIL with the count.
#include <stdint.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

#define UART 0x10000000UL
#define FINISHER 0x100000UL
#define VIRTIO_BASE 0x10001000UL
#define VIRTIO_SLOTS 8

// virtio-mmio registers (VIRTIO 1.2 §4.2.2) and status bits (§2.1).
#define MAGIC 0x000
#define VERSION 0x004
#define DEVICE_ID 0x008
#define DEVICE_FEATURES_SEL 0x014
#define DEVICE_FEATURES 0x010
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
#define VIRTIO_BLK_T_IN 0
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define QSIZE 8

/** Pages of code the disk holds (hostile-code.test.ts writes them): page p is `addi a0, a0, DISK_IMM(p)`
 * followed by `ret` to its end. */
#define DISK_PAGES 8
#define DISK_IMM(p) (((p) + 1) * 7)
#define INSN_RET 0x00008067u
#define INSN_ADDI_A0_A0(imm) ((((u32)(imm) & 0xfff) << 20) | 0x00050513u)

extern u64 self_patch(u64 n);
extern u64 store_storm(u64 n);

typedef u64 (*fn_t)(u64);

static volatile u32 *reg32(u64 a) { return (volatile u32 *)a; }

// --- output -------------------------------------------------------------------------------------------

static void putc_(char c) {
  volatile u8 *u = (volatile u8 *)UART;
  while ((u[5] & 0x20) == 0) {
  }
  u[0] = (u8)c;
}

static void puts_(const char *s) {
  while (*s) putc_(*s++);
}

static void puthex(u64 v) {
  puts_("0x");
  for (int i = 60; i >= 0; i -= 4) putc_("0123456789abcdef"[(v >> i) & 15]);
}

static int failures;

static void report(const char *name, u64 got, u64 want) {
  puts_(name);
  putc_(' ');
  puthex(got);
  if (got == want) {
    puts_(" ok\n");
  } else {
    puts_(" BAD want ");
    puthex(want);
    putc_('\n');
    failures++;
  }
}

static void finish(void) {
  *reg32(FINISHER) = failures == 0 ? 0x5555 : ((u32)failures << 16) | 0x3333;
  for (;;) {
  }
}

void trap_report(u64 cause, u64 epc, u64 tval, u64 hart) {
  puts_("TRAP hart ");
  puthex(hart);
  puts_(" mcause ");
  puthex(cause);
  puts_(" mepc ");
  puthex(epc);
  puts_(" mtval ");
  puthex(tval);
  putc_('\n');
  *reg32(FINISHER) = (0xfe << 16) | 0x3333;
  for (;;) {
  }
}

// --- code in RAM ----------------------------------------------------------------------------------------

/** Where this program writes the code it runs; page-aligned, one page per function. */
static u32 code[8][1024] __attribute__((aligned(4096)));

static void fence_i(void) { __asm__ volatile("fence.i" ::: "memory"); }

/** Writes `addi a0, a0, imm; ret` at the start of page `p` of `code`. */
static void write_adder(int p, int imm) {
  code[p][0] = INSN_ADDI_A0_A0(imm);
  code[p][1] = INSN_RET;
}

static fn_t page_fn(int p) { return (fn_t)(void *)code[p]; }

static void smc_call(void) {
  u64 got = 0, want = 0;
  for (int round = 0; round < 6; round++) {
    int imm = 3 + round * 101;
    write_adder(0, imm);
    fence_i();
    fn_t f = page_fn(0);
    for (int i = 0; i < 40000; i++) got = f(got);
    want += (u64)imm * 40000;
  }
  report("smc-call", got, want);
}

static void self_patch_check(void) {
  const u64 n = 40000;
  u64 want = 0; // iteration k (1-based) runs IMM = (k - 1) & 1023, written by iteration k - 1
  for (u64 k = 1; k <= n; k++) want += (k - 1) & 1023;
  report("self-patch", self_patch(n), want);
}

static void store_storm_check(void) {
  const u64 n = 40000;
  report("store-storm", store_storm(n), 2 * (n - 1) + n);
}

/** Writes page-sized functions at 2,560 different offsets in turn (each `addi a0, a0, k` then `ret`), runs
 * each a few times, and sums their results. */
static void jit_spray(void) {
  u64 got = 0, want = 0;
  for (int k = 0; k < 2560; k++) {
    int p = 1 + (k & 3);
    int slot = (k >> 2) % 500; // 2-word functions at word offsets 0, 2, 4, … of pages 1–4
    u32 *at = &code[p][slot * 2];
    at[0] = INSN_ADDI_A0_A0(k & 2047);
    at[1] = INSN_RET;
    fence_i();
    fn_t f = (fn_t)(void *)at;
    for (int i = 0; i < 4; i++) got = f(got);
    want += 4 * (u64)(k & 2047);
  }
  report("jit-spray", got, want);
}

// --- virtio-blk, polled --------------------------------------------------------------------------------

struct desc {
  u64 addr;
  u32 len;
  u16 flags;
  u16 next;
};
struct avail {
  u16 flags;
  u16 idx;
  u16 ring[QSIZE];
};
struct used_elem {
  u32 id;
  u32 len;
};
struct used {
  u16 flags;
  u16 idx;
  struct used_elem ring[QSIZE];
};
struct blk_req {
  u32 type;
  u32 reserved;
  u64 sector;
};

static struct desc descs[QSIZE] __attribute__((aligned(16)));
static struct avail avail __attribute__((aligned(2)));
static struct used used __attribute__((aligned(4)));
static struct blk_req req;
static volatile u8 req_status;
static u64 blk;
static u16 avail_idx;

static void blk_init(void) {
  for (int s = 0; s < VIRTIO_SLOTS && blk == 0; s++) {
    u64 b = VIRTIO_BASE + (u64)s * 0x1000;
    if (*reg32(b + MAGIC) == 0x74726976 && *reg32(b + VERSION) == 2 && *reg32(b + DEVICE_ID) == 2) blk = b;
  }
  if (blk == 0) {
    puts_("no virtio-blk (version 2) found\n");
    failures++;
    finish();
  }
  *reg32(blk + STATUS) = 0;
  *reg32(blk + STATUS) = S_ACKNOWLEDGE | S_DRIVER;
  *reg32(blk + DRIVER_FEATURES_SEL) = 1;
  *reg32(blk + DRIVER_FEATURES) = 1; // VIRTIO_F_VERSION_1 (bit 32), nothing else
  *reg32(blk + DRIVER_FEATURES_SEL) = 0;
  *reg32(blk + DRIVER_FEATURES) = 0;
  *reg32(blk + STATUS) = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK;
  *reg32(blk + QUEUE_SEL) = 0;
  *reg32(blk + QUEUE_NUM) = QSIZE;
  *reg32(blk + QUEUE_DESC_LOW) = (u32)(u64)descs;
  *reg32(blk + QUEUE_DESC_HIGH) = (u32)((u64)descs >> 32);
  *reg32(blk + QUEUE_AVAIL_LOW) = (u32)(u64)&avail;
  *reg32(blk + QUEUE_AVAIL_HIGH) = (u32)((u64)&avail >> 32);
  *reg32(blk + QUEUE_USED_LOW) = (u32)(u64)&used;
  *reg32(blk + QUEUE_USED_HIGH) = (u32)((u64)&used >> 32);
  *reg32(blk + QUEUE_READY) = 1;
  *reg32(blk + STATUS) = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
}

/** Starts a read of `len` bytes at disk byte `pos` (sector-aligned) into `dst`; blk_wait() waits for it. */
static void blk_start_read(void *dst, u64 pos, u32 len) {
  req.type = VIRTIO_BLK_T_IN;
  req.reserved = 0;
  req.sector = pos / 512;
  req_status = 0xff;
  descs[0] = (struct desc){(u64)&req, sizeof req, VRING_DESC_F_NEXT, 1};
  descs[1] = (struct desc){(u64)dst, len, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2};
  descs[2] = (struct desc){(u64)&req_status, 1, VRING_DESC_F_WRITE, 0};
  avail.ring[avail_idx % QSIZE] = 0;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  avail.idx = ++avail_idx;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  *reg32(blk + QUEUE_NOTIFY) = 0;
}

static void blk_wait(void) {
  while (__atomic_load_n(&used.idx, __ATOMIC_ACQUIRE) != avail_idx) {
  }
  *reg32(blk + INTERRUPT_ACK) = *reg32(blk + INTERRUPT_STATUS);
  if (req_status != 0) {
    puts_("virtio-blk read failed\n");
    failures++;
    finish();
  }
}

// --- two harts ------------------------------------------------------------------------------------------

enum { CMD_NONE, CMD_DMA_CODE, CMD_SMC_CROSS, CMD_LOCK, CMD_SPIN, CMD_HAMMER };
static volatile int cmd, cmd_done;
/** dma-code: the disk page now over code[0] (0: none yet), and hart 1's acknowledgement of it. */
static volatile int dma_phase, dma_ack, hart1_bad;
static volatile u64 hart1_calls;

static void hart1_dma_code(void) {
  fn_t f = page_fn(0);
  int seen = 0;
  while (seen < DISK_PAGES) {
    // Runs the function whatever its state: every mix of old and new words is `addi a0, a0, IMM; ret`.
    f(0);
    hart1_calls++;
    int phase = __atomic_load_n(&dma_phase, __ATOMIC_ACQUIRE);
    if (phase != seen) {
      fence_i();
      if (f(1000) != 1000 + DISK_IMM(phase - 1)) hart1_bad++;
      seen = phase;
      __atomic_store_n(&dma_ack, phase, __ATOMIC_RELEASE);
    }
  }
}

static void run_on_hart1(int c) {
  __atomic_store_n(&cmd_done, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&cmd, c, __ATOMIC_RELEASE);
}

static void wait_hart1(void) {
  while (__atomic_load_n(&cmd_done, __ATOMIC_ACQUIRE) == 0) {
  }
}

static void dma_code(void) {
  write_adder(0, 1);
  fence_i();
  fn_t f = page_fn(0);
  for (int i = 0; i < 40000; i++) f(0); // hot: compiled where the machine compiles
  dma_phase = 0;
  dma_ack = 0;
  run_on_hart1(CMD_DMA_CODE);
  u64 got = 0, want = 0;
  for (int p = 0; p < DISK_PAGES; p++) {
    blk_start_read(code[0], (u64)p * 4096, 4096);
    // Hart 0 keeps running the page while the device writes it, as hart 1 does.
    while (__atomic_load_n(&used.idx, __ATOMIC_ACQUIRE) != avail_idx) f(0);
    blk_wait();
    fence_i();
    for (int i = 0; i < 20000; i++) got = f(got);
    want += (u64)DISK_IMM(p) * 20000;
    __atomic_store_n(&dma_phase, p + 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&dma_ack, __ATOMIC_ACQUIRE) != p + 1) {
    }
  }
  wait_hart1();
  report("dma-code", got, want);
  report("dma-code-hart1-bad", hart1_bad, 0);
  report("dma-code-hart1-ran", hart1_calls >= DISK_PAGES, 1);
}

/** smc-cross: hart 1 writes version v of code[5] (`addi a0, a0, 11·v`) and publishes v; hart 0 runs the
 * page all along, and after seeing v and its fence.i must get version v's result. */
#define SMC_VERSIONS 12
static volatile int smc_phase, smc_ack;

static void hart1_smc_cross(void) {
  for (int v = 1; v <= SMC_VERSIONS; v++) {
    write_adder(5, 11 * v);
    __atomic_store_n(&smc_phase, v, __ATOMIC_RELEASE);
    while (__atomic_load_n(&smc_ack, __ATOMIC_ACQUIRE) != v) {
    }
  }
}

static void smc_cross(void) {
  write_adder(5, 0);
  fence_i();
  fn_t f = page_fn(5);
  for (int i = 0; i < 40000; i++) f(0); // hot: compiled where the machine compiles
  smc_phase = smc_ack = 0;
  run_on_hart1(CMD_SMC_CROSS);
  u64 got = 0, want = 0;
  for (int v = 1; v <= SMC_VERSIONS; v++) {
    while (__atomic_load_n(&smc_phase, __ATOMIC_ACQUIRE) != v) f(0);
    fence_i();
    for (int i = 0; i < 1000; i++) got = f(got);
    want += 11ULL * v * 1000;
    __atomic_store_n(&smc_ack, v, __ATOMIC_RELEASE);
  }
  wait_hart1();
  report("smc-cross", got, want);
}

/** lrsc-lock: a spinlock of lr.w.aq/sc.w.rl around a two-word update that tears without it. */
static volatile u32 lock_word;
static volatile u64 pair_a, pair_b;
#define LOCK_ROUNDS 20000

static void spin_lock(volatile u32 *l) {
  u32 old, fail;
  do {
    __asm__ volatile(
        "1: lr.w.aq %0, (%2)\n"
        "   bnez %0, 1b\n"
        "   li %1, 1\n"
        "   sc.w.rl %1, %1, (%2)\n"
        : "=&r"(old), "=&r"(fail)
        : "r"(l)
        : "memory");
  } while (fail != 0);
}

static void spin_unlock(volatile u32 *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

static u64 torn;

static void lock_rounds(void) {
  for (int i = 0; i < LOCK_ROUNDS; i++) {
    spin_lock(&lock_word);
    u64 a = pair_a;
    if (pair_b != a) torn++;
    pair_a = a + 1;
    pair_b = a + 1;
    spin_unlock(&lock_word);
  }
}

static void lrsc_lock(void) {
  pair_a = pair_b = 0;
  torn = 0;
  run_on_hart1(CMD_LOCK);
  lock_rounds();
  wait_hart1();
  report("lrsc-lock", pair_a, 2 * LOCK_ROUNDS);
  report("lrsc-lock-torn", torn, 0);
}

/** lrsc-spin: hart 1 spins on lr.w until hart 0's plain store; then lr.d/sc.d against amoadd.d. */
static volatile u32 flag;
static volatile u64 hammered;
static volatile u64 spins;
#define HAMMER_ROUNDS 20000

static void hart1_spin(void) {
  u32 v;
  u64 n = 0;
  do {
    __asm__ volatile("lr.w %0, (%1)" : "=r"(v) : "r"(&flag) : "memory");
    n++;
  } while (v == 0);
  spins = n;
}

static void hart1_hammer(void) {
  for (int i = 0; i < HAMMER_ROUNDS; i++) __atomic_fetch_add(&hammered, 3, __ATOMIC_RELAXED); // amoadd.d
}

static void lrsc_spin(void) {
  flag = 0;
  run_on_hart1(CMD_SPIN);
  u64 x = 1;
  for (int i = 0; i < 300000; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  __atomic_store_n(&flag, (u32)x | 1, __ATOMIC_RELEASE);
  wait_hart1();
  report("lrsc-spin-woke", spins > 0, 1);
  hammered = 0;
  run_on_hart1(CMD_HAMMER);
  for (int i = 0; i < HAMMER_ROUNDS; i++) {
    u64 old, fail;
    do {
      __asm__ volatile(
          "lr.d %0, (%2)\n"
          "addi %0, %0, 5\n"
          "sc.d %1, %0, (%2)\n"
          : "=&r"(old), "=&r"(fail)
          : "r"(&hammered)
          : "memory");
    } while (fail != 0);
  }
  wait_hart1();
  report("lrsc-hammer", hammered, 8ULL * HAMMER_ROUNDS);
}

/** lrsc-dma: "an SC must fail if a write from some other device to the bytes accessed by the LR can be
 * observed to occur between the LR and SC" (RISC-V unprivileged ISA, 13.2). */
static u32 dma_target[1024] __attribute__((aligned(4096)));

static void lrsc_dma(void) {
  dma_target[0] = 0x1234;
  u32 v, fail;
  __asm__ volatile("lr.w %0, (%1)" : "=r"(v) : "r"(dma_target) : "memory");
  blk_start_read(dma_target, 0, 4096); // disk page 0: dma_target[0] becomes `addi a0, a0, DISK_IMM(0)`
  blk_wait();
  __asm__ volatile("sc.w %0, %2, (%1)" : "=r"(fail) : "r"(dma_target), "r"(0x5678) : "memory");
  report("lrsc-dma-loaded", v, 0x1234);
  report("lrsc-dma-sc-failed", fail != 0, 1);
  report("lrsc-dma-word", dma_target[0], INSN_ADDI_A0_A0(DISK_IMM(0)));
}

// --- harts' main ------------------------------------------------------------------------------------------

void main1(void) {
  for (;;) {
    int c;
    while ((c = __atomic_load_n(&cmd, __ATOMIC_ACQUIRE)) == CMD_NONE) {
    }
    if (c == CMD_DMA_CODE) hart1_dma_code();
    if (c == CMD_SMC_CROSS) hart1_smc_cross();
    if (c == CMD_LOCK) lock_rounds();
    if (c == CMD_SPIN) hart1_spin();
    if (c == CMD_HAMMER) hart1_hammer();
    __atomic_store_n(&cmd, CMD_NONE, __ATOMIC_RELAXED);
    __atomic_store_n(&cmd_done, 1, __ATOMIC_RELEASE);
  }
}

void main0(void) {
  smc_call();
  self_patch_check();
  store_storm_check();
  jit_spray();
  blk_init();
  dma_code();
  smc_cross();
  lrsc_lock();
  lrsc_spin();
  lrsc_dma();
  puts_(failures == 0 ? "ALL OK\n" : "FAILED\n");
  finish();
}
