import ArgumentParser

@main
struct DumpFleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dumpfleet",
        abstract: "Reads Windows kernel crash dumps (full, kernel, bitmap and minidumps) offline.",
        discussion: """
        Examples:
          dumpfleet analyze MEMORY.DMP            what crashed, who is to blame, what to do
          dumpfleet inspect MEMORY.DMP            what kind of dump, which crash, how complete
          dumpfleet inspect --json Mini*.dmp      the same as JSON, one document per file
          dumpfleet forge --kind minidump x.dmp   write a realistic synthetic dump
          dumpfleet demo                          forge sample dumps and inspect them
        """,
        subcommands: [Analyze.self, Inspect.self, Upload.self, Status.self, Show.self, Wait.self,
                      CoordinatorCommand.self, WorkerCommand.self, Migrate.self, Reprocess.self, Forge.self, Demo.self]
    )
}
