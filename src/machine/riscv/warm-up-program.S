# JIT warm-up program for Rv64Hart (see warm-up-program.ts): one pass of its loop runs every path of the
# hart's inner loop once — each OP-IMM/OP/OP-32 form, loads and stores of every width (TLB hit, miss and
# misaligned), both outcomes of every branch, JAL/JALR, RVC, a 32-bit instruction across a page boundary —
# and a few of exec's (CSR, AMO, LR/SC, FP, ECALL, an access fault, MRET), and a fetch from the one-instruction
# ROM at 0x1000 that the warm-up maps (mapWarmUpRom in hart.ts). M-mode, linked at 0x80000000,
# data at 0x80008000 and 0x8000a000 (64 KiB of RAM). s1 counts passes.
.section .text.init
.globl _start
_start:
    lla t0, trap
    csrw mtvec, t0
    li t0, 0x2000
    csrs mstatus, t0
    li s0, 0x80008000
    li s2, 0x8000a000
    li s1, 0
loop:
    .option norvc
    addi a0, s1, 5
    slli a1, a0, 3
    slli a1, a0, 40
    slli a1, a0, 0
    slti a2, a0, -1
    slti a2, a0, 1000       # equal high halves: the low halves are compared too
    sltiu a3, a0, 100
    xori a4, a0, -3
    srli a5, a0, 3
    srli a5, a1, 35
    srli a5, a1, 0
    srai a6, a4, 2
    srai a6, a4, 40
    ori a7, a0, 7
    andi t1, a0, 12
    addiw a0, a0, 1
    slliw a1, a0, 3
    srliw a2, a4, 3
    sraiw a3, a4, 3
    add a0, a1, a2
    sub a3, a1, a2
    sll a4, a1, a2
    slt a5, a1, a4
    sltu a5, a1, a4
    xor a6, a1, a2
    srl a6, a4, a2
    sra a6, a4, a2
    or a7, a1, a2
    and a7, a1, a2
    mul t1, a1, a2
    mulh t1, a1, a4
    mulhsu t1, a1, a4
    mulhu t1, a1, a4
    div t2, a4, a2
    divu t2, a4, a2
    rem t2, a4, a2
    remu t2, a4, a2
    addw a0, a1, a2
    subw a0, a1, a2
    sllw a0, a1, a2
    srlw a0, a1, a2
    sraw a0, a1, a2
    mulw a0, a1, a2
    divw a0, a1, a2
    divuw a0, a1, a2
    remw a0, a1, a2
    remuw a0, a1, a2
    # The same with operands of 64 significant bits (products and quotients past 2^53 take other paths).
    li t3, 0x123456789abcdef1
    li t4, -0x0fedcba987654321
    mul t5, t3, t4
    mulh t5, t3, t4
    mulhsu t5, t3, t4
    mulhu t5, t3, t4
    div t5, t3, t4
    divu t5, t3, t4
    rem t5, t3, t4
    remu t5, t3, t4
    mulw t5, t3, t4
    divuw t5, t3, t4
    lui a0, 0x12345
    auipc a1, 0
    sb a0, 0(s0)
    sh a0, 2(s0)
    sw a0, 4(s0)
    sd a0, 8(s0)
    lb a1, 0(s0)
    lh a1, 2(s0)
    lw a1, 4(s0)
    ld a1, 8(s0)
    lbu a1, 0(s0)
    lhu a1, 2(s0)
    lwu a1, 4(s0)
    sd a0, 0(s2)
    ld a1, 0(s2)
    lw a1, 4(s2)
    lh a1, 2(s2)
    lb a1, 1(s2)
    lwu a1, 4(s2)
    lhu a1, 2(s2)
    lbu a1, 1(s2)
    sw a0, 4(s2)
    sh a0, 2(s2)
    sb a0, 1(s2)
    sw a0, 17(s0)
    lw a1, 17(s0)
    ld a1, 19(s0)
    sd a1, 21(s0)
    lh a1, 17(s0)
    sh a1, 19(s0)
    lhu a1, 17(s0)
    lwu a1, 17(s0)
    beq a0, a0, 1f
1: beq a0, a1, 1f
1: bne a0, a1, 1f
1: bne a0, a0, 1f
1: blt a0, a1, 1f
1: blt a1, a0, 1f
1: bge a0, a1, 1f
1: bge a1, a0, 1f
1: bltu a0, a1, 1f
1: bltu a1, a0, 1f
1: bgeu a0, a1, 1f
1: bgeu a1, a0, 1f
1: jal ra, sub
    lla t0, sub
    jalr ra, 0(t0)
    li t0, 2                # backward conditional branches, taken and not (OpenSBI's first loop is one)
1:  addi t0, t0, -1
    bnez t0, 1b
    csrr a0, mscratch
    csrw mscratch, a0
    csrs mscratch, a0
    csrc mscratch, a0
    csrwi mscratch, 5
    csrsi mscratch, 2
    csrci mscratch, 1
    li t0, 0
    csrc mip, t0            # a read-modify-write of mip (its SEIP rule), writing what is there
    li t0, 0x1000           # a `ret` in the warm-up's ROM (hart.ts): a fetch from MMIO, as from the boot ROM
    jalr ra, 0(t0)
    lw t1, 4(t0)            # MMIO loads of every width (the slow path of each); the ROM's word there reads
    lwu t1, 4(t0)           # 0xffffffff
    lh t1, 4(t0)
    lhu t1, 4(t0)
    lb t1, 4(t0)
    lbu t1, 4(t0)
    ld t1, 0(t0)
    sw t1, 8(t0)            # and an MMIO store (ignored)
    li t0, (8 << 60) | (0x80010000 >> 12)
    csrw satp, t0           # Sv39 with a root above 2 GiB (M-mode still translates bare), then off again
    csrw satp, zero
    fence rw, rw
    fence
    sfence.vma              # every pass starts with empty TLBs, so each access kind takes its miss path again
    csrr a0, mstatus
    csrr a0, minstret
    amoadd.w a0, a1, (s0)
    amoswap.d a0, a1, (s0)
    lr.d a0, (s0)
    sc.d a1, a0, (s0)
    fld fa0, 8(s0)
    fsd fa0, 8(s0)
    fadd.d fa1, fa0, fa0
    fmul.d fa1, fa0, fa1
    fcvt.d.l fa2, a0
    fmv.x.d a3, fa2
    ecall
    ld a0, 0(zero)
    .option rvc
    c.addi a0, 1
    c.li a1, 3
    c.mv a2, a0
    c.add a2, a1
    c.sub a2, a1
    c.slli a2, 2
    c.srli a2, 1
    c.andi a2, 7
    c.lw a3, 4(s0)
    c.sw a3, 4(s0)
    c.ld a3, 8(s0)
    c.sd a3, 8(s0)
    c.beqz a3, 1f
1: c.bnez a3, 1f
1: c.j 1f
1: c.addiw a0, 1
    addi s1, s1, 1
    j xpage
sub:
    ret
    .balign 4
trap:
    csrr t0, mepc
    addi t0, t0, 4
    csrw mepc, t0
    mret
    # xpage's first instruction straddles the page boundary at 0x80002000.
    .org 0x1ffe
xpage:
    .option norvc
    addi a0, a0, 1
    j loop
