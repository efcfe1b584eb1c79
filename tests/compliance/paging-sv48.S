// Sv48 paging: the Sv39 checks of paging.inc on a 4-level walk, plus a 512 GiB superpage and an address
// that only Sv48 makes canonical (RISC-V privileged ISA, section 4.5 "Sv48").
#include "test.h"
#define LEVELS 4
#define SATP_MODE SATP_MODE_SV48
// bits 63..48 must all equal bit 47
#define NONCANONICAL_VA 0x0000800000000000
// 0x0000004000000000 is non-canonical in Sv39 but a plain address in Sv48: a 4K page -> page_b.
// 0x0000008000000000 (root index 1) is a 512 GiB superpage -> PA 0.
#define VA_SV48_ONLY 0x0000004000000000
#define VA_512G 0x0000008000000000
#define EXTRA_MAPPINGS \
  MAP_LABEL(VA_SV48_ONLY, page_b, PTE_V | PTE_R | PTE_W | AD, LEAF_4K); \
  MAP(VA_512G, 0, PTE_V | PTE_R | PTE_W | AD, LEAF_512G)
#define EXTRA_CHECKS \
  CHECK_NUM(50); GOTO_S(1f); 1: li t2, VA_SV48_ONLY; ld a0, 0(t2); BACK_TO_M(2f); 2: \
  CHECK_REG(a0, 0x2222222222222222); \
  CHECK_NUM(51); GOTO_S(1f); 1: la t2, page_b; li t1, VA_512G; add t2, t2, t1; ld a0, 0(t2); \
  li t1, 0x9999; sd t1, 48(t2); BACK_TO_M(2f); 2: CHECK_REG(a0, 0x2222222222222222); \
  la t0, page_b; ld a0, 48(t0); CHECK_REG(a0, 0x9999)
#include "paging.inc"
