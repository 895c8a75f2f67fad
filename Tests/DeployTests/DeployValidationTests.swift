import Foundation
import Testing

/// The deployment files under deploy/ pass their offline validators: scripts/validate-deploy
/// runs systemd-analyze verify, kubernetes-validate --strict and docker-compose config
/// (scripts/setup installs them).
@Suite struct DeployValidationTests {
    /// Tests/DeployTests/DeployValidationTests.swift -> the repository root.
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func deploymentFilesValidate() throws {
        let script = Self.repositoryRoot.appendingPathComponent("scripts/validate-deploy")
        #expect(FileManager.default.isExecutableFile(atPath: script.path), "\(script.path) is missing or not executable")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script.path]
        process.currentDirectoryURL = Self.repositoryRoot
        process.standardInput = FileHandle.nullDevice
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        #expect(process.terminationReason == .exit && process.terminationStatus == 0,
                "scripts/validate-deploy exited with status \(process.terminationStatus):\n\(text)")
    }
}
