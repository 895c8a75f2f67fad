// The three page compressors of kdump-compressed files (QEMU's dump-guest-memory and
// makedumpfile): zlib, LZO1X and snappy (its C interface). Only their bounded decompressors are
// used on a dump's bytes, and their compressors by tests that write such files.
#include <zlib.h>
#include <lzo/lzo1x.h>
#include <snappy-c.h>

// lzo_init() is a macro that passes the header's type sizes to the library; Swift imports no
// function-like macros.
static inline int df_lzo_init(void) { return lzo_init(); }
