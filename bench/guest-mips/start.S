// Entry of the guest-mips benchmark on QEMU's virt board (M-mode, -bios none): a result block at a fixed
// address, a stack, then bench_main(); the verdict goes to the sifive_test finisher and HTIF tohost.
  .section .text.init, "ax"
  .option nopic
  .globl _start
_start:
  j 1f

  // Result block at 0x80000040, written at the end of the run (see README.md):
  //   +0 magic "MIPSBNCH"  +8 instret  +16 cycles  +24 checksum  +32 done (1 once the others are valid)
  .balign 64
  .globl bench_result
bench_result:
  .ascii "MIPSBNCH"
  .dword 0, 0, 0, 0

1:
  csrwi mie, 0
  li t0, 1 << 13                 // mstatus.FS = Initial; nothing else
  csrw mstatus, t0
  la sp, _stack_top
  call bench_main
  // report: tohost = 1 (pass), then the finisher
  la t0, tohost
  li t1, 1
  sd t1, 0(t0)
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
2:
  wfi
  j 2b

  .data
  .align 3
  .globl tohost
tohost: .dword 0
  .globl fromhost
fromhost: .dword 0
