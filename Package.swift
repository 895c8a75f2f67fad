// swift-tools-version:6.0
// DumpFleet: Windows kernel crash dumps processed at fleet scale.
//
// Layers, from pure to I/O (an arrow is an import):
//   DumpFormat                     on-disk structures, bounds-checked reader (no Foundation)
//   DumpMemory   -> DumpFormat, CPageCodecs   physical and virtual memory, KDDEBUGGER_DATA64 (no Foundation)
//   SymbolFiles                    PDB (MSF, DBI, publics, TPI) and ISF readers (no Foundation)
//   DumpAnalysis -> DumpMemory, SymbolFiles   reports built from a dump (no Foundation)
//   CrashSimilarity -> DumpAnalysis  how alike two crashes are; MinHash band keys (no Foundation)
//   DumpForge                      writes synthetic dumps; shares no layout code with the parser
//   DumpFile     -> DumpFormat     mmap and sparse writes (Glibc only)
//   SymbolStore  -> SymbolFiles, CLZMA   a site's symbol directories (--symbols), .json.xz
//   Store        -> CLibPQ, FleetAPI   PostgreSQL: migrations, the job queue, uploads, reports
//   BlobStore    -> CLZ4, Crypto   content-addressed, LZ4-compressed dump files
//   FleetAPI                       the HTTP API's request and response bodies (Codable)
//   Coordinator  -> Store, BlobStore, CrashClusters, Hummingbird   uploads, status, blobs, clusters, metrics
//   FleetClient  -> BlobStore, FleetAPI, AsyncHTTPClient      uploads and queries over HTTP
//   CrashClusters -> Store, CrashSimilarity   similarity search, clusters, correlations in PostgreSQL
//   Worker       -> Store, BlobStore, FleetClient, DumpAnalysis, CrashClusters   claims, analyzes, stores
//   dumpfleet                      the one executable: subcommands over all of the above
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
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
    ],
    targets: [
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CLZMA", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        // zlib, LZO and snappy: the page compressors of kdump-compressed captures.
        .systemLibrary(name: "CPageCodecs", providers: [.apt(["zlib1g-dev", "liblzo2-dev", "libsnappy-dev"])]),
        // glibc's mallopt, for `capture --stream`'s buffers.
        .systemLibrary(name: "CMalloc"),

        .target(name: "DumpFormat"),
        .target(name: "DumpMemory", dependencies: ["DumpFormat", "CPageCodecs"]),
        .target(name: "SymbolFiles"),
        .target(name: "DumpAnalysis", dependencies: ["DumpFormat", "DumpMemory", "SymbolFiles"]),
        .target(name: "SymbolStore", dependencies: ["SymbolFiles", "CLZMA"]),
        .target(name: "CrashSimilarity", dependencies: ["DumpAnalysis"]),
        .target(name: "DumpForge"),
        .target(name: "DumpFile", dependencies: ["DumpFormat"]),
        .target(name: "Store", dependencies: ["CLibPQ", "FleetAPI"]),
        .target(name: "BlobStore", dependencies: ["CLZ4", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "FleetAPI"),
        .target(name: "Coordinator", dependencies: [
            "Store", "BlobStore", "FleetAPI", "CrashClusters", "DumpAnalysis", "DumpFormat",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),
        .target(name: "FleetClient", dependencies: [
            "BlobStore", "FleetAPI",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "CrashClusters", dependencies: ["Store", "FleetAPI", "CrashSimilarity", "DumpAnalysis"]),
        .target(name: "Worker", dependencies: [
            "Store", "BlobStore", "FleetClient", "DumpAnalysis", "DumpFormat", "DumpMemory", "DumpFile", "CrashClusters", "SymbolFiles",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(
            name: "dumpfleet",
            dependencies: [
                "DumpFormat", "DumpMemory", "DumpAnalysis", "DumpForge", "DumpFile",
                "Store", "BlobStore", "FleetAPI", "Coordinator", "FleetClient", "Worker", "CrashClusters", "SymbolStore", "CPageCodecs", "CMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "DumpBench",
            dependencies: ["DumpFormat", "DumpMemory", "DumpAnalysis", "DumpForge", "DumpFile", "TestSupport"],
            path: "Benchmarks/DumpBench"
        ),
        .executableTarget(
            name: "FleetBench",
            dependencies: ["Store", "BlobStore", "FleetAPI", "Coordinator", "FleetClient", "Worker", "DumpForge", "DumpFile",
                           "CrashClusters", "CrashSimilarity", "DumpAnalysis", "TestSupport",
                           .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/FleetBench"
        ),

        .target(name: "TestSupport", dependencies: ["DumpFormat", "DumpForge", "DumpFile", "DumpMemory", "DumpAnalysis", "Store", "CrashClusters", "CrashSimilarity",
                                                    "FleetClient", .product(name: "NIOCore", package: "swift-nio")],
                path: "Tests/TestSupport"),
        // Each test target names every module it imports. One imported only through another
        // target's dependencies was not rebuilt when that module changed: DumpFormatTests kept
        // an old DumpDescription layout and crashed until a clean build.
        .testTarget(name: "DumpFormatTests", dependencies: ["DumpFormat", "DumpForge", "TestSupport"]),
        .testTarget(name: "DumpMemoryTests", dependencies: ["DumpFormat", "DumpMemory", "DumpForge", "TestSupport", "CPageCodecs"]),
        .testTarget(name: "DumpForgeTests", dependencies: ["DumpFormat", "DumpForge", "DumpMemory", "TestSupport"]),
        .testTarget(name: "DumpAnalysisTests", dependencies: ["DumpAnalysis", "DumpFile", "DumpFormat", "DumpMemory", "DumpForge", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["dumpfleet", "TestSupport"]),
        .testTarget(name: "SystemLibraryTests", dependencies: ["CLZ4", "CLibPQ"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "TestSupport"]),
        .testTarget(name: "FleetTests", dependencies: [
            "Coordinator", "FleetClient", "Worker", "Store", "BlobStore", "FleetAPI", "DumpForge", "DumpFile", "DumpAnalysis", "TestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "DeployTests"),
        .testTarget(name: "ClusterTests", dependencies: ["CrashSimilarity", "CrashClusters", "DumpAnalysis", "DumpForge", "DumpMemory", "Store", "FleetAPI", "TestSupport"]),
        .testTarget(name: "SymbolFilesTests", dependencies: ["SymbolFiles", "SymbolStore", "DumpAnalysis", "DumpFormat", "DumpMemory", "DumpForge", "TestSupport"]),
        .testTarget(name: "BlobStoreTests", dependencies: ["BlobStore", "TestSupport", .product(name: "Crypto", package: "swift-crypto")]),
    ]
)
