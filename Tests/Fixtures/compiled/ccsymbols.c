// A driver-like image with a PDB, for the symbol-file readers. Built by build.sh with the Swift
// toolchain's clang (-gcodeview) and lld-link (/debug), a real Windows-targeting toolchain.
//
// The structures are named and laid out like the Windows 10 19041 kernel's, for the fields the
// analysis reads: the offsets below are Microsoft's, from the ISF table of ntkrnlmp.pdb
// 19041.804 in shared/fixtures/isf, and the static asserts hold the compiler to them. Some sit
// in anonymous unions and structures, as in the real kernel, where a reader must look inside.
typedef unsigned long long u64;
typedef unsigned char u8;
#define offsetof(type, field) __builtin_offsetof(type, field)

typedef struct _LIST_ENTRY { struct _LIST_ENTRY *Flink, *Blink; } LIST_ENTRY;
typedef struct _CLIENT_ID { void *UniqueProcess, *UniqueThread; } CLIENT_ID;

typedef struct _KAPC_STATE {
    LIST_ENTRY ApcListHead[2];
    struct _KPROCESS *Process;
    u8 Flags[8];
} KAPC_STATE;
_Static_assert(offsetof(KAPC_STATE, Process) == 0x20 && sizeof(KAPC_STATE) == 0x30, "KAPC_STATE");

typedef struct _KPROCESS {
    u8 Header[0x18];
    LIST_ENTRY ProfileListHead;
    u64 DirectoryTableBase;
    u8 Rest[0x438 - 0x30];
} KPROCESS;
_Static_assert(offsetof(KPROCESS, DirectoryTableBase) == 0x28 && sizeof(KPROCESS) == 0x438, "KPROCESS");

typedef struct _EPROCESS {
    KPROCESS Pcb;
    u8 Lock[0x440 - 0x438];
    void *UniqueProcessId;
    LIST_ENTRY ActiveProcessLinks;
    u8 Gap1[0x540 - 0x458];
    void *InheritedFromUniqueProcessId;
    u8 Gap2[0x5A8 - 0x548];
    u8 ImageFileName[15];
    u8 Gap3[0x5E0 - 0x5B7];
    LIST_ENTRY ThreadListHead;
    u8 Rest[0xA40 - 0x5F0];
} EPROCESS;
_Static_assert(offsetof(EPROCESS, UniqueProcessId) == 0x440 && offsetof(EPROCESS, InheritedFromUniqueProcessId) == 0x540
               && offsetof(EPROCESS, ImageFileName) == 0x5A8 && offsetof(EPROCESS, ThreadListHead) == 0x5E0 && sizeof(EPROCESS) == 0xA40, "EPROCESS");

typedef struct _KTHREAD {
    u8 Header[0x30];
    union {
        struct {
            void *StackLimit;
            void *StackBase;
        };
        u8 Stacks[0x10];
    };
    u8 Gap1[0x58 - 0x40];
    void *KernelStack;
    u8 Gap2[0x90 - 0x60];
    struct _KTRAP_FRAME *TrapFrame;
    union {
        KAPC_STATE ApcState;
        u8 ApcStateFill[0x30];
    };
    u8 Gap3[0x184 - 0xC8];
    u8 State;
    u8 Rest[0x430 - 0x185];
} KTHREAD;
_Static_assert(offsetof(KTHREAD, StackLimit) == 0x30 && offsetof(KTHREAD, StackBase) == 0x38 && offsetof(KTHREAD, KernelStack) == 0x58
               && offsetof(KTHREAD, TrapFrame) == 0x90 && offsetof(KTHREAD, ApcState) == 0x98 && offsetof(KTHREAD, State) == 0x184
               && sizeof(KTHREAD) == 0x430, "KTHREAD");

typedef struct _ETHREAD {
    KTHREAD Tcb;
    u8 Gap1[0x478 - 0x430];
    CLIENT_ID Cid;
    u8 Gap2[0x4E8 - 0x488];
    LIST_ENTRY ThreadListEntry;
    u8 Rest[0x898 - 0x4F8];
} ETHREAD;
_Static_assert(offsetof(ETHREAD, Cid) == 0x478 && offsetof(ETHREAD, ThreadListEntry) == 0x4E8 && sizeof(ETHREAD) == 0x898, "ETHREAD");

typedef struct _KPROCESSOR_STATE {
    u8 SpecialRegisters[0xF0];
    u8 ContextFrame[0x4D0];
} KPROCESSOR_STATE;
_Static_assert(offsetof(KPROCESSOR_STATE, ContextFrame) == 0xF0 && sizeof(KPROCESSOR_STATE) == 0x5C0, "KPROCESSOR_STATE");

typedef struct _KTIMER_TABLE_ENTRY { u64 Lock; LIST_ENTRY Entry; u64 Time; } KTIMER_TABLE_ENTRY;
typedef struct _KTIMER_TABLE {
    struct _KTIMER *TimerExpiry[64];
    KTIMER_TABLE_ENTRY TimerEntries[2][256];
    u8 TableState[0x18];
} KTIMER_TABLE;
_Static_assert(offsetof(KTIMER_TABLE, TimerEntries) == 0x200 && sizeof(KTIMER_TABLE) == 0x4218, "KTIMER_TABLE");

typedef struct _KPRCB {
    u64 MxCsr;
    KTHREAD *CurrentThread;
    KTHREAD *NextThread;
    KTHREAD *IdleThread;
    u8 Gap1[0x100 - 0x20];
    KPROCESSOR_STATE ProcessorState;
    u8 Gap2[0x3940 - 0x6C0];
    KTIMER_TABLE TimerTable;
    u8 Rest[0xAF00 - 0x7B58];
} KPRCB;
_Static_assert(offsetof(KPRCB, CurrentThread) == 0x8 && offsetof(KPRCB, IdleThread) == 0x18 && offsetof(KPRCB, ProcessorState) == 0x100
               && offsetof(KPRCB, TimerTable) == 0x3940 && sizeof(KPRCB) == 0xAF00, "KPRCB");

// One object of each, so that the compiler describes every type in the PDB.
EPROCESS CcsProcess;
ETHREAD CcsThread;
KPRCB CcsPrcb;

void (*volatile KeBugCheckEx)(u64 code, u64 p1, u64 p2, u64 p3, u64 p4);
volatile u64 CcsSink;

// Not exported: only the PDB names it (a module procedure, S_LPROC32, with its size).
static __declspec(noinline) void CcsValidateRequest(u64 value) {
    if (value > 0x1000) KeBugCheckEx(0xD1, value, 2, 0, (u64)&CcsProcess);
    CcsSink = value + (u64)&CcsThread + (u64)&CcsPrcb;
}

// Exported under another name than its own: the export says CcsEntryPoint, the PDB says
// CcsDispatchRequest.
__declspec(noinline) u64 CcsDispatchRequest(u64 value) {
    CcsValidateRequest(value * 3);
    return CcsSink + 1;
}
#pragma comment(linker, "/export:CcsEntryPoint=CcsDispatchRequest")
