import ArgumentParser

@main
struct DumpFleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dumpfleet",
        abstract: "Windows kernel crash dumps (full, kernel, bitmap and minidumps), analyzed offline, one or a fleet at a time.",
        discussion: """
        Examples:
          dumpfleet analyze MEMORY.DMP            what crashed, and who is to blame
          dumpfleet inspect MEMORY.DMP            dump kind, crash, completeness
          dumpfleet inspect --json Mini*.dmp      the same as JSON, one per file
          dumpfleet upload MEMORY.DMP --vm vdi-0147 --server URL --token T
                                                  send a dump to the coordinator
          dumpfleet capture vdi-0147 --server URL --token T
                                                  dump a VM's memory on its KVM host, upload it
          dumpfleet wait 12; dumpfleet show 12    its analysis, once a worker is done
          dumpfleet similar 12                    where else this crash happens
          dumpfleet clusters; dumpfleet cluster 4 recurring causes across VMs
          dumpfleet coordinator / worker          run the fleet (deploy/OPERATIONS.md)
          dumpfleet forge --kind minidump x.dmp   write a realistic synthetic dump
          dumpfleet demo                          the fleet on a private PostgreSQL
        """,
        subcommands: [Analyze.self, Inspect.self, Upload.self, Capture.self, Status.self, Show.self, Wait.self, Similar.self, Clusters.self, Cluster.self,
                      CoordinatorCommand.self, WorkerCommand.self, Migrate.self, Reprocess.self, Requeue.self, Recluster.self, Forge.self, Demo.self]
    )
}
