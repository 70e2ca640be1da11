#ifndef NK_LANES_H
#define NK_LANES_H

#if defined(__x86_64__)
#include <immintrin.h>

// Returns the mask of the first `count` of 16 float lanes: none for a count of 0 or
// less, all 16 for 16 or more.
static inline __mmask16 first_lanes(long count) {
    if (count <= 0) return 0;
    if (count >= 16) return (__mmask16)0xFFFF;
    return (__mmask16)((1u << count) - 1);
}
#endif

#endif
