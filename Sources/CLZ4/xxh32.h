// XXH32, the checksum of the LZ4 frame format (header, block and content checksums).
// liblz4 uses it internally but does not export it, and the coordinator needs its state in the
// open: an upload's verification stops at the end of one request and resumes in the next, or
// after a restart, from a checkpoint on disk (Sources/BlobStore/FrameVerifier.swift), so the
// running content checksum must be saved and restored. Written from the xxHash specification
// (github.com/Cyan4973/xxHash, doc/xxhash_spec.md): four lanes of 32-bit rounds over 16-byte
// stripes, the rest folded in 4 and 1 bytes at a time, then an avalanche. Little-endian hosts.
#ifndef DUMPFLEET_XXH32_H
#define DUMPFLEET_XXH32_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

typedef struct {
    uint64_t total;       // bytes hashed so far
    uint32_t lanes[4];    // the four accumulators
    uint8_t buffer[16];   // bytes of an unfinished stripe
    uint32_t buffered;    // how many of them
} DFXXH32State;

static const uint32_t DFXXH32_P1 = 2654435761U;
static const uint32_t DFXXH32_P2 = 2246822519U;
static const uint32_t DFXXH32_P3 = 3266489917U;
static const uint32_t DFXXH32_P4 = 668265263U;
static const uint32_t DFXXH32_P5 = 374761393U;

static inline uint32_t dfxxh32_rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint32_t dfxxh32_read(const uint8_t *p) {
    uint32_t value;
    memcpy(&value, p, 4);
    return value;
}

static inline uint32_t dfxxh32_round(uint32_t lane, uint32_t input) {
    lane += input * DFXXH32_P2;
    lane = dfxxh32_rotl(lane, 13);
    return lane * DFXXH32_P1;
}

static inline void dfxxh32_reset(DFXXH32State *state, uint32_t seed) {
    memset(state, 0, sizeof *state);
    state->lanes[0] = seed + DFXXH32_P1 + DFXXH32_P2;
    state->lanes[1] = seed + DFXXH32_P2;
    state->lanes[2] = seed;
    state->lanes[3] = seed - DFXXH32_P1;
}

static inline void dfxxh32_stripe(DFXXH32State *state, const uint8_t *p) {
    state->lanes[0] = dfxxh32_round(state->lanes[0], dfxxh32_read(p));
    state->lanes[1] = dfxxh32_round(state->lanes[1], dfxxh32_read(p + 4));
    state->lanes[2] = dfxxh32_round(state->lanes[2], dfxxh32_read(p + 8));
    state->lanes[3] = dfxxh32_round(state->lanes[3], dfxxh32_read(p + 12));
}

static inline void dfxxh32_update(DFXXH32State *state, const void *input, size_t length) {
    const uint8_t *p = (const uint8_t *)input;
    const uint8_t *end = p + length;
    state->total += length;
    if (state->buffered + length < 16) {
        if (length > 0) memcpy(state->buffer + state->buffered, p, length);
        state->buffered += (uint32_t)length;
        return;
    }
    if (state->buffered > 0) {
        size_t fill = 16 - state->buffered;
        memcpy(state->buffer + state->buffered, p, fill);
        dfxxh32_stripe(state, state->buffer);
        p += fill;
        state->buffered = 0;
    }
    uint32_t v1 = state->lanes[0], v2 = state->lanes[1], v3 = state->lanes[2], v4 = state->lanes[3];
    while (end - p >= 16) {
        v1 = dfxxh32_round(v1, dfxxh32_read(p));
        v2 = dfxxh32_round(v2, dfxxh32_read(p + 4));
        v3 = dfxxh32_round(v3, dfxxh32_read(p + 8));
        v4 = dfxxh32_round(v4, dfxxh32_read(p + 12));
        p += 16;
    }
    state->lanes[0] = v1; state->lanes[1] = v2; state->lanes[2] = v3; state->lanes[3] = v4;
    if (p < end) {
        memcpy(state->buffer, p, (size_t)(end - p));
        state->buffered = (uint32_t)(end - p);
    }
}

static inline uint32_t dfxxh32_digest(const DFXXH32State *state) {
    uint32_t h;
    if (state->total >= 16) {
        h = dfxxh32_rotl(state->lanes[0], 1) + dfxxh32_rotl(state->lanes[1], 7)
          + dfxxh32_rotl(state->lanes[2], 12) + dfxxh32_rotl(state->lanes[3], 18);
    } else {
        h = state->lanes[2] + DFXXH32_P5;  // lanes[2] still holds the seed
    }
    h += (uint32_t)state->total;
    const uint8_t *p = state->buffer;
    const uint8_t *end = p + state->buffered;
    while (end - p >= 4) {
        h += dfxxh32_read(p) * DFXXH32_P3;
        h = dfxxh32_rotl(h, 17) * DFXXH32_P4;
        p += 4;
    }
    while (p < end) {
        h += (*p) * DFXXH32_P5;
        h = dfxxh32_rotl(h, 11) * DFXXH32_P1;
        p++;
    }
    h ^= h >> 15;
    h *= DFXXH32_P2;
    h ^= h >> 13;
    h *= DFXXH32_P3;
    h ^= h >> 16;
    return h;
}

#endif
