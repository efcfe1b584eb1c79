// Debug trigger CSRs as QEMU 7.2's virt hart has them (RISC-V Debug Specification 0.13, §5 "Trigger
// Module"; QEMU target/riscv/debug.c): two triggers, tselect/tdata1/tdata2/tdata3/tinfo M-mode only,
// tdata1 a type 2 (mcontrol) or type 6 (mcontrol6) trigger keeping only the bits QEMU implements.
// Every trigger written here matches no address the program executes or accesses, so none fires.
#include "test.h"

#define CSR_TSELECT 0x7a0
#define CSR_TDATA1 0x7a1
#define CSR_TDATA2 0x7a2
#define CSR_TDATA3 0x7a3
#define CSR_TINFO 0x7a4

#define TYPE2 (2 << 60)
#define TYPE6 (6 << 60)
#define DMODE (1 << 59)
// mcontrol: load, store, exec, U, S, M (bit 5 would be H), match, chain, action, sizelo, timing, select, hit, sizehi
#define MC_LSX 0x7
#define MC_U (1 << 3)
#define MC_S (1 << 4)
#define MC_M (1 << 6)
#define MC_MATCH (0xf << 7)
#define MC_CHAIN (1 << 11)
#define MC_ACTION (0xf << 12)
#define MC_SIZELO(s) ((s) << 16)
#define MC_TIMING (1 << 18)
#define MC_SELECT (1 << 19)
#define MC_HIT (1 << 20)
#define MC_SIZEHI(s) ((s) << 21)
// mcontrol6: size is 4 bits at 16, then timing, select, hit, vu, vs
#define MC6_SIZE(s) ((s) << 16)
#define MC6_TIMING (1 << 20)
#define MC6_SELECT (1 << 21)
#define MC6_HIT (1 << 22)
#define MC6_VU (1 << 23)
#define MC6_VS (1 << 24)

// An address no check executes or touches: a trigger on it never fires.
#define NOWHERE 0x123456789abcdef0

  .text
  .globl test_main
test_main:
  // ---- after reset: trigger 0 selected, both type 2 with nothing enabled; tinfo = types 2 and 6 ----
  TEST_CASE(1, a0, 0x44, csrr a0, CSR_TINFO)
  TEST_CASE(2, a0, 0, csrr a0, CSR_TSELECT)
  TEST_CASE(3, a0, TYPE2, csrr a0, CSR_TDATA1)
  TEST_CASE(4, a0, 0, csrr a0, CSR_TDATA2)
  TEST_CASE(5, a0, 0, csrr a0, CSR_TDATA3)
  TEST_CASE(6, a0, 1, csrwi CSR_TSELECT, 1; csrr a0, CSR_TSELECT)
  TEST_CASE(7, a0, TYPE2, csrr a0, CSR_TDATA1)

  // ---- tselect keeps its value when written with a trigger that does not exist (2, 31, -1, 2^32) ----
  TEST_CASE(8, a0, 1, csrwi CSR_TSELECT, 2; csrr a0, CSR_TSELECT)
  TEST_CASE(9, a0, 1, csrwi CSR_TSELECT, 31; csrr a0, CSR_TSELECT)
  TEST_CASE(10, a0, 1, li a1, -1; csrw CSR_TSELECT, a1; csrr a0, CSR_TSELECT)
  TEST_CASE(11, a0, 1, li a1, 1 << 32; csrw CSR_TSELECT, a1; csrr a0, CSR_TSELECT)
  TEST_CASE(12, a0, 0, csrwi CSR_TSELECT, 0; csrr a0, CSR_TSELECT)

  // ---- tdata2 first (so enabling a trigger matches NOWHERE), all 64 bits, per trigger ----
  TEST_CASE(13, a0, NOWHERE, li a1, NOWHERE; csrw CSR_TDATA2, a1; csrr a0, CSR_TDATA2)
  TEST_CASE(14, a0, 0, csrwi CSR_TSELECT, 1; csrr a0, CSR_TDATA2)
  TEST_CASE(15, a0, ~NOWHERE, li a1, ~NOWHERE; csrw CSR_TDATA2, a1; csrr a0, CSR_TDATA2)
  TEST_CASE(16, a0, NOWHERE, csrwi CSR_TSELECT, 0; csrr a0, CSR_TDATA2)

  // ---- type 2: mode, load/store/exec and a supported size are kept; dmode, match, chain, action,
  // timing, select and hit read zero ----
  TEST_CASE(17, a0, TYPE2 | MC_M | MC_S | MC_U | MC_LSX | MC_SIZELO(1),
    li a1, TYPE2 | DMODE | MC_M | MC_S | MC_U | MC_LSX | MC_SIZELO(1); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(18, a0, TYPE2 | MC_M | MC_LSX,
    li a1, TYPE2 | MC_M | MC_LSX | MC_MATCH | MC_CHAIN | MC_ACTION | MC_TIMING | MC_SELECT | MC_HIT | (1 << 5);
    csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  // size = sizehi:sizelo; 1, 2, 3 (1, 2, 4 bytes) and 5 (8 bytes) are kept, 4 and 6..15 become 0 (any)
  TEST_CASE(19, a0, TYPE2 | MC_M | MC_SIZELO(3), li a1, TYPE2 | MC_M | MC_SIZELO(3); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(20, a0, TYPE2 | MC_M | MC_SIZEHI(1) | MC_SIZELO(1),
    li a1, TYPE2 | MC_M | MC_SIZEHI(1) | MC_SIZELO(1); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(21, a0, TYPE2 | MC_M, li a1, TYPE2 | MC_M | MC_SIZEHI(1); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(22, a0, TYPE2 | MC_S, li a1, TYPE2 | MC_S | MC_SIZEHI(3) | MC_SIZELO(3); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(23, a0, TYPE2 | MC_U, li a1, TYPE2 | MC_U | MC_SIZEHI(1) | MC_SIZELO(2); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  // csrs/csrc go through the same filter
  TEST_CASE(24, a0, TYPE2 | MC_U | MC_LSX, li a1, MC_LSX | MC_HIT; csrs CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(25, a0, TYPE2 | MC_LSX, li a1, MC_U; csrc CSR_TDATA1, a1; csrr a0, CSR_TDATA1)

  // ---- a write of another type is ignored: 0 (none), 3 (icount), 4, 5, 7 (unsupported), 15 (unavailable) ----
  TEST_CASE(26, a0, TYPE2 | MC_LSX, csrw CSR_TDATA1, zero; csrr a0, CSR_TDATA1)
  TEST_CASE(27, a0, TYPE2 | MC_LSX, li a1, (3 << 60) | 0x7ff; csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(28, a0, TYPE2 | MC_LSX, li a1, (4 << 60) | MC_M; csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(29, a0, TYPE2 | MC_LSX, li a1, (5 << 60) | MC_M; csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(30, a0, TYPE2 | MC_LSX, li a1, (7 << 60) | MC_M; csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(31, a0, TYPE2 | MC_LSX, li a1, (15 << 60) | MC_M; csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)

  // ---- type 6 (mcontrol6): vu, vs, mode, load/store/exec and a supported size kept ----
  TEST_CASE(32, a0, TYPE6 | MC6_VU | MC6_VS | MC_M | MC_S | MC_U | MC_LSX | MC6_SIZE(5),
    li a1, TYPE6 | DMODE | MC6_VU | MC6_VS | MC_M | MC_S | MC_U | MC_LSX | MC6_SIZE(5) | MC_MATCH | MC_CHAIN | MC_ACTION;
    csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(33, a0, TYPE6 | MC_M, li a1, TYPE6 | MC_M | MC6_TIMING | MC6_SELECT | MC6_HIT; csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(34, a0, TYPE6 | MC_M, li a1, TYPE6 | MC_M | MC6_SIZE(4); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(35, a0, TYPE6 | MC_M, li a1, TYPE6 | MC_M | MC6_SIZE(9); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(36, a0, TYPE6 | MC_M | MC6_SIZE(2), li a1, TYPE6 | MC_M | MC6_SIZE(2); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  // a type 6 trigger's tdata2 is written as a type 2's; back to type 2
  TEST_CASE(37, a0, NOWHERE + 8, li a1, NOWHERE + 8; csrw CSR_TDATA2, a1; csrr a0, CSR_TDATA2)
  TEST_CASE(38, a0, TYPE2 | MC_M | MC_SIZELO(2), li a1, TYPE2 | MC_M | MC_SIZELO(2); csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)
  TEST_CASE(39, a0, NOWHERE + 8, csrr a0, CSR_TDATA2)

  // ---- tdata3 reads zero, writes are ignored; tinfo is read-only in effect but writable without a trap ----
  TEST_CASE(40, a0, 0, li a1, -1; csrw CSR_TDATA3, a1; csrr a0, CSR_TDATA3)
  TEST_CASE(41, a0, 0x44, li a1, -1; csrw CSR_TINFO, a1; csrr a0, CSR_TINFO)
  TEST_CASE(42, a0, 0x44, li a1, -1; csrrw a0, CSR_TINFO, a1)

  // ---- the other trigger kept its own tdata1 ----
  TEST_CASE(43, a0, TYPE2, csrwi CSR_TSELECT, 1; csrr a0, CSR_TDATA1)
  TEST_CASE(44, a0, TYPE2 | MC_M | MC_SIZELO(2), csrwi CSR_TSELECT, 0; csrr a0, CSR_TDATA1)
  // disable trigger 0 again
  TEST_CASE(45, a0, TYPE2, li a1, TYPE2; csrw CSR_TDATA1, a1; csrr a0, CSR_TDATA1)

  // ---- the debug CSRs QEMU 7.2 does not have are illegal: tcontrol (0x7a5), mcontext (0x7a8), scontext (0x5a8) ----
  TEST_TRAP(46, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, 0x7a5)
  TEST_TRAP(47, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, 0x7a8)
  TEST_TRAP(48, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, 0x5a8)

  // ---- M-mode only: S and U trap on reads and writes ----
  CHECK_NUM(49)
  GOTO_S(1f)
1:
  TEST_TRAP(50, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, CSR_TSELECT)
  GOTO_S(1f)
1:
  TEST_TRAP(51, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, CSR_TINFO)
  GOTO_S(1f)
1:
  TEST_TRAP(52, CAUSE_ILLEGAL_INSTRUCTION, csrw CSR_TDATA1, zero)
  GOTO_U(1f)
1:
  TEST_TRAP(53, CAUSE_ILLEGAL_INSTRUCTION, csrr a0, CSR_TDATA2)
  // and nothing changed
  TEST_CASE(54, a0, TYPE2, csrr a0, CSR_TDATA1)

  TEST_PASS
