// swift-tools-version:6.0
// DumpFleet: Windows kernel crash dumps processed at fleet scale.
//
// Layers, from pure to I/O (an arrow is an import):
//   DumpFormat                     on-disk structures, bounds-checked reader (no Foundation)
//   DumpMemory   -> DumpFormat     physical and virtual memory, KDDEBUGGER_DATA64 (no Foundation)
//   DumpAnalysis -> DumpMemory     reports built from a dump (no Foundation)
//   DumpForge                      writes synthetic dumps; shares no layout code with the parser
//   DumpFile     -> DumpFormat     mmap and sparse writes (Glibc only)
//   Store        -> CLibPQ         PostgreSQL: migrations, the job queue, reports
//   BlobStore    -> CLZ4, Crypto   content-addressed, LZ4-compressed dump files
//   dumpfleet                      the one executable; the only place that uses Foundation
import PackageDescription

let package = Package(
    name: "DumpFleet",
    products: [
        .executable(name: "dumpfleet", targets: ["dumpfleet"]),
        .library(name: "DumpFormat", targets: ["DumpFormat"]),
        .library(name: "DumpMemory", targets: ["DumpMemory"]),
        .library(name: "DumpForge", targets: ["DumpForge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),

        .target(name: "DumpFormat"),
        .target(name: "DumpMemory", dependencies: ["DumpFormat"]),
        .target(name: "DumpAnalysis", dependencies: ["DumpFormat", "DumpMemory"]),
        .target(name: "DumpForge"),
        .target(name: "DumpFile", dependencies: ["DumpFormat"]),
        .target(name: "Store", dependencies: ["CLibPQ"]),
        .target(name: "BlobStore", dependencies: ["CLZ4", .product(name: "Crypto", package: "swift-crypto")]),
        .executableTarget(
            name: "dumpfleet",
            dependencies: [
                "DumpFormat", "DumpMemory", "DumpAnalysis", "DumpForge", "DumpFile",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "DumpBench",
            dependencies: ["DumpFormat", "DumpMemory", "DumpAnalysis", "DumpForge", "DumpFile"],
            path: "Benchmarks/DumpBench"
        ),

        .target(name: "TestSupport", dependencies: ["DumpFormat", "DumpForge", "DumpFile"], path: "Tests/TestSupport"),
        .testTarget(name: "DumpFormatTests", dependencies: ["DumpFormat", "TestSupport"]),
        .testTarget(name: "DumpMemoryTests", dependencies: ["DumpMemory", "DumpForge", "TestSupport"]),
        .testTarget(name: "DumpForgeTests", dependencies: ["DumpForge", "DumpMemory", "TestSupport"]),
        .testTarget(name: "DumpAnalysisTests", dependencies: ["DumpAnalysis", "DumpMemory", "DumpForge", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["dumpfleet", "TestSupport"]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["CLZ4", "CLibPQ"]),
        .testTarget(name: "StoreTests", dependencies: ["Store"]),
        .testTarget(name: "BlobStoreTests", dependencies: ["BlobStore"]),
    ]
)
