/// Structure offsets of Windows 10 build 19041 x64, as the forge writes them.
///
/// Transcribed from the PDB-derived tables in shared/docs (kernel-offsets-by-build.txt,
/// kernel-structs-19041.txt). Kept apart from the parser's tables on purpose: a mistake on either
/// side shows up as a failed round trip instead of cancelling out.
enum Layout19041 {
    enum KPCR {
        static let size = 0xB080
        static let selfPointer = 0x18
        static let currentPrcb = 0x20
        static let prcb = 0x180
    }

    enum KPRCB {
        static let size = 0xAF00
        static let currentThread = 0x8
        static let nextThread = 0x10
        static let idleThread = 0x18
        static let number = 0x24
        static let cpuType = 0x40
        static let mhz = 0x44
        static let processorState = 0x100
        static let specialRegistersCr3 = 0x110
        static let contextFrame = 0x1F0
        static let dpcStack = 0x3110
        static let timerTable = 0x3940
        static let vendorString = 0x8590
        static let context = 0x85C0
        static let isrStack = 0x85D8
    }

    enum KTimerTable {
        /// TimerEntries[2][256] of KTIMER_TABLE_ENTRY (0x20 bytes; LIST_ENTRY at +8).
        static let entries = 0x200
        static let entrySize = 0x20
        static let entryList = 0x8
        static let entryCount = 512
    }

    enum KTHREAD {
        static let initialStack = 0x28
        static let stackLimit = 0x30
        static let stackBase = 0x38
        static let kernelStack = 0x58
        static let trapFrame = 0x90
        static let apcStateProcess = 0xB8
        static let teb = 0xF0
        static let state = 0x184
        static let nextProcessor = 0x218
        static let process = 0x220
        static let waitReason = 0x283
        static let threadListEntry = 0x2F8
    }

    enum ETHREAD {
        static let size = 0x898
        static let startAddress = 0x450
        static let cid = 0x478
        static let threadListEntry = 0x4E8
    }

    enum EPROCESS {
        static let size = 0xA40
        static let directoryTableBase = 0x28
        static let kprocessThreadListHead = 0x30
        static let userDirectoryTableBase = 0x388
        static let uniqueProcessId = 0x440
        static let activeProcessLinks = 0x448
        static let createTime = 0x468
        static let inheritedFromUniqueProcessId = 0x540
        static let peb = 0x550
        static let imageFileName = 0x5A8
        static let threadListHead = 0x5E0
        static let activeThreads = 0x5F0
    }

    enum KLDR {
        static let size = 0xA0
        static let exceptionTable = 0x10
        static let exceptionTableSize = 0x18
        static let dllBase = 0x30
        static let entryPoint = 0x38
        static let sizeOfImage = 0x40
        static let fullDllName = 0x48
        static let baseDllName = 0x58
        static let flags = 0x68
        static let loadCount = 0x6C
        static let checkSum = 0x78
        static let timeDateStamp = 0x9C
    }

    /// KDDEBUGGER_DATA64 fields the forge fills, with the values 19041 uses.
    enum KDBG {
        static let size = 0x380
        static let kernBase = 0x18
        static let psLoadedModuleList = 0x48
        static let psActiveProcessHead = 0x50
        static let mmPfnDatabase = 0xC0
        static let ntBuildLab = 0x208
        static let kiProcessorBlock = 0x218
        static let mmUnloadedDrivers = 0x220
        static let mmLastUnloadedDriver = 0x228
        static let pteBase = 0x360
        /// u8: the physical-address bit set in non-present PTEs against L1TF (19H1+).
        static let l1tfHighPhysicalBitIndex = 0x2C2
        /// u8: the PTE bit that marks a non-present entry left unswizzled.
        static let l1tfSwizzleBitIndex = 0x2C3
        /// The forge's choice: above any RAM it describes, as Windows picks it.
        static let l1tfBit = 45
        /// `SwizzleBit` of `_MMPTE_TRANSITION`, `_MMPTE_SOFTWARE` and `_MMPTE_PROTOTYPE`.
        static let swizzleBit = 4
        /// (offset in KDBG, 16-bit value) pairs of the structure-offset fields.
        static let offsets16: [(Int, UInt16)] = [
            (0x298, 0x218), (0x29A, 0xF0), (0x29C, 0x58), (0x29E, 0x28), (0x2A0, 0xB8), (0x2A2, 0x184),
            (0x2A8, 0xA40), (0x2AA, 0x550), (0x2AC, 0x540), (0x2AE, 0x28), (0x2B0, 0xAF00), (0x2B2, 0x312A),
            (0x2B4, 0x8), (0x2B6, 0x44), (0x2B8, 0x40), (0x2BA, 0x8590), (0x2BC, 0x1F0), (0x2BE, 0x24),
            (0x2C0, 0x898), (0x2E0, 0xB080), (0x2E4, 0x20), (0x2E6, 0x180), (0x2F2, 0x100), (0x338, 0x85C0),
            (0x350, 0x18), (0x354, 0x3110), (0x356, 0x85D8), (0x358, 0x50), (0x35C, 0x283),
        ]
        /// (offset, 32-bit value): KTHREAD StackLimit, StackBase, QueueListEntry; ETHREAD IrpList.
        static let offsets32: [(Int, UInt32)] = [(0x340, 0x30), (0x344, 0x38), (0x348, 0x208), (0x34C, 0x4B0)]
    }
}

