// Driver-like functions in the shapes compilers emit, for the unwinder's tests. Built by build.sh
// with a real Windows-targeting toolchain; every function is exported so the frames have names.
typedef unsigned long long u64;
// The kernel, called through a pointer the loader would fill (no import library needed).
void (*volatile KeBugCheckEx)(u64 code, u64 p1, u64 p2, u64 p3, u64 p4);

volatile u64 sink;
// The C runtime symbol that marks floating-point use; a driver links it from the kernel.
int _fltused = 0;

// Leaf: no prolog, no unwind info of its own.
__declspec(dllexport) __declspec(noinline) u64 CcLeaf(u64 x) { return x * 3 + 1; }

// The innermost caller: calls the kernel.
__declspec(dllexport) __declspec(noinline) void CcCrash(u64 value) {
    KeBugCheckEx(0xD1, value, 2, 0, CcLeaf(value));
    sink = value;
}

// Saved XMM registers: floating-point values live across a call.
__declspec(dllexport) __declspec(noinline) double CcFloat(double a, double b, u64 n) {
    double x = a * b, y = a + b, z = a - b;
    CcCrash(n);
    return x * y + z;
}

// A large frame: 64 KiB of locals (a __chkstk probe and UWOP_ALLOC_LARGE).
__declspec(dllexport) __declspec(noinline) u64 CcLarge(u64 n) {
    volatile char buffer[0x10000];
    buffer[n & 0xFFFF] = (char)n;
    u64 r = (u64)CcFloat((double)n, 2.0, n);
    return r + buffer[(n * 7) & 0xFFFF];
}

// A frame pointer: a variable-sized allocation.
__declspec(dllexport) __declspec(noinline) u64 CcFramePointer(u64 n) {
    volatile char *dynamic = __builtin_alloca(n * 16 + 32);
    dynamic[0] = 1;
    u64 r = CcLarge(n);
    return r + dynamic[0];
}

// Callee-saved registers pushed: several values live across the call.
__declspec(dllexport) __declspec(noinline) u64 CcSaves(u64 a, u64 b, u64 c, u64 d) {
    u64 e = a * b, f = c * d, g = a ^ d, h = b + c;
    u64 r = CcFramePointer(a);
    return r + e + f + g + h;
}

// A tail call: returns by jumping to CcSaves.
__declspec(dllexport) __declspec(noinline) u64 CcTail(u64 a) { return CcSaves(a, a + 1, a + 2, a + 3); }

__declspec(dllexport) u64 CcDispatch(u64 a) {
    u64 r = CcTail(a);
    sink = r;
    return r + 1;
}
