// Sv39 paging: 3-level walk, 4K/2M/1G pages, permissions, A/D, SUM/MXR/MPRV, sfence.vma, faults
// (RISC-V privileged ISA, section 4.4 "Sv39"). The checks are shared with Sv48 in paging.inc.
#include "test.h"
#define LEVELS 3
#define SATP_MODE SATP_MODE_SV39
// bits 63..39 must all equal bit 38
#define NONCANONICAL_VA 0x0000004000000000
#include "paging.inc"
