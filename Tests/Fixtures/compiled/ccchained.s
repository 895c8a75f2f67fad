# Unwind data a compiler writes but clang's C code generation does not: registers saved by mov
# (CcSavesByMove), and chained unwind info (UNW_FLAG_CHAININFO), as MSVC emits for a cold path
# moved out of its function: CcChainedCold pushes one more register than CcChained's own prolog, and its
# RUNTIME_FUNCTION points back to CcChained's for the rest. clang's assembler writes the
# records from the .seh_ directives (.seh_startchained / .seh_endchained); build.sh links it.
# A nop follows each call whose next instruction would begin an epilog, as MSVC does, so that
# a return address never looks like an epilog.
    .text
    .globl CcCallChained
    .def CcCallChained; .scl 2; .type 32; .endef
    .seh_proc CcCallChained
CcCallChained:
    subq $0x28, %rsp
    .seh_stackalloc 0x28
    .seh_endprologue
    callq CcSavesByMove
    nop
    addq $0x28, %rsp
    retq
    .seh_endproc

# Nonvolatile registers saved with mov into the caller's home space (UWOP_SAVE_NONVOL), as
# MSVC saves them, instead of pushed.
    .globl CcSavesByMove
    .def CcSavesByMove; .scl 2; .type 32; .endef
    .seh_proc CcSavesByMove
CcSavesByMove:
    subq $0x48, %rsp
    .seh_stackalloc 0x48
    movq %rdi, 0x50(%rsp)
    .seh_savereg %rdi, 0x50
    movq %r12, 0x58(%rsp)
    .seh_savereg %r12, 0x58
    .seh_endprologue
    movq %rcx, %rdi
    leaq 1(%rcx), %r12
    xorl %ecx, %ecx
    callq CcChained
    nop
    movq 0x50(%rsp), %rdi
    movq 0x58(%rsp), %r12
    addq $0x48, %rsp
    retq
    .seh_endproc

    .globl CcChained
    .def CcChained; .scl 2; .type 32; .endef
    .seh_proc CcChained
CcChained:
    pushq %rbx
    .seh_pushreg %rbx
    subq $0x30, %rsp
    .seh_stackalloc 0x30
    .seh_endprologue
    testq %rcx, %rcx
    je CcChainedCold
    movq %rcx, %rbx
    addq $0x30, %rsp
    popq %rbx
    retq
    .globl CcChainedCold
CcChainedCold:
    .seh_startchained
    pushq %rsi
    .seh_pushreg %rsi
    .seh_endprologue
    movl $0xD1, %ecx
    callq *KeBugCheckEx(%rip)
    nop
    popq %rsi
    addq $0x30, %rsp
    popq %rbx
    retq
    .seh_endchained
    .seh_endproc

    .data
    .globl KeBugCheckEx
KeBugCheckEx:
    .quad 0
