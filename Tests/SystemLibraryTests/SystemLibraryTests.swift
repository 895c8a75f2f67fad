import CLZ4
import CLibPQ
import Testing

/// The system-library targets link and answer: liblz4 and libpq as Debian 12 ships them.
@Test func lz4AndLibpqAreLinked() {
    #expect(LZ4_versionNumber() >= 10_900)
    #expect(PQlibVersion() >= 150_000)
}
