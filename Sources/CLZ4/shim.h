#include <lz4.h>
#include <lz4frame.h>
#include "xxh32.h"
