#include "nk_kernels.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline int inside(long y, long x, const nk_geometry *g) {
    return y >= 0 && y < g->input_height && x >= 0 && x < g->input_width;
}

void nk_im2col(const float *input, const nk_geometry *g, long first, long end, float *columns) {
    const long channels = g->channels;
    const long sample_size = g->input_height * g->input_width * channels;
    float *row = columns;
    for (long n = first; n < end; n++) {
        const float *sample = input + n * sample_size;
        for (long oy = 0; oy < g->output_height; oy++) {
            for (long ox = 0; ox < g->output_width; ox++) {
                for (long ky = 0; ky < g->kernel_height; ky++) {
                    const long iy = oy * g->stride_height - g->pad_top + ky;
                    const long ix0 = ox * g->stride_width - g->pad_left;
                    if (iy >= 0 && iy < g->input_height && ix0 >= 0 && ix0 + g->kernel_width <= g->input_width) {
                        // The whole kernel row is inside: one contiguous run of kernel_width * channels values.
                        memcpy(row, sample + (iy * g->input_width + ix0) * channels, sizeof(float) * g->kernel_width * channels);
                        row += g->kernel_width * channels;
                        continue;
                    }
                    for (long kx = 0; kx < g->kernel_width; kx++) {
                        const long ix = ix0 + kx;
                        if (inside(iy, ix, g)) {
                            const float *source = sample + (iy * g->input_width + ix) * channels;
                            for (long c = 0; c < channels; c++) row[c] = source[c];
                        } else {
                            for (long c = 0; c < channels; c++) row[c] = 0;
                        }
                        row += channels;
                    }
                }
            }
        }
    }
}

void nk_col2im(const float *columns, const nk_geometry *g, long first, long end, float *input_gradient) {
    const long channels = g->channels;
    const long sample_size = g->input_height * g->input_width * channels;
    const float *row = columns;
    memset(input_gradient + first * sample_size, 0, sizeof(float) * (end - first) * sample_size);
    for (long n = first; n < end; n++) {
        float *sample = input_gradient + n * sample_size;
        for (long oy = 0; oy < g->output_height; oy++) {
            for (long ox = 0; ox < g->output_width; ox++) {
                for (long ky = 0; ky < g->kernel_height; ky++) {
                    const long iy = oy * g->stride_height - g->pad_top + ky;
                    const long ix0 = ox * g->stride_width - g->pad_left;
                    if (iy >= 0 && iy < g->input_height && ix0 >= 0 && ix0 + g->kernel_width <= g->input_width) {
                        float *destination = sample + (iy * g->input_width + ix0) * channels;
                        const long count = g->kernel_width * channels;
                        for (long i = 0; i < count; i++) destination[i] += row[i];
                        row += count;
                        continue;
                    }
                    for (long kx = 0; kx < g->kernel_width; kx++) {
                        const long ix = ix0 + kx;
                        if (inside(iy, ix, g)) {
                            float *destination = sample + (iy * g->input_width + ix) * channels;
                            for (long c = 0; c < channels; c++) destination[c] += row[c];
                        }
                        row += channels;
                    }
                }
            }
        }
    }
}

/// Replaces best[c] by values[c], and best_offset[c] by base + c, wherever values[c] is
/// greater or NaN and best[c] is not NaN: the first maximum wins ties, as in TensorFlow,
/// and a NaN, once taken, stays.
static inline void update_maximum(const float *restrict values, int32_t base, long channels, float *restrict best,
                                  int32_t *restrict best_offset) {
    long c = 0;
#if defined(__SSE2__)
    const __m128i lane = _mm_set_epi32(3, 2, 1, 0);
    for (; c + 4 <= channels; c += 4) {
        const __m128 value = _mm_loadu_ps(values + c);
        const __m128 current = _mm_loadu_ps(best + c);
        const __m128 takes = _mm_and_ps(_mm_cmpnle_ps(value, current), _mm_cmpord_ps(current, current));
        _mm_storeu_ps(best + c, _mm_or_ps(_mm_and_ps(takes, value), _mm_andnot_ps(takes, current)));
        const __m128i takes_bits = _mm_castps_si128(takes);
        const __m128i offset = _mm_add_epi32(_mm_set1_epi32(base + (int32_t)c), lane);
        const __m128i previous = _mm_loadu_si128((const __m128i *)(best_offset + c));
        _mm_storeu_si128((__m128i *)(best_offset + c),
                         _mm_or_si128(_mm_and_si128(takes_bits, offset), _mm_andnot_si128(takes_bits, previous)));
    }
#endif
    for (; c < channels; c++) {
        if (!(values[c] <= best[c]) && best[c] == best[c]) {
            best[c] = values[c];
            best_offset[c] = base + (int32_t)c;
        }
    }
}

void nk_max_pool(const float *input, const nk_geometry *g, long first, long end, float *output, int32_t *argmax) {
    const long channels = g->channels;
    const long sample_size = g->input_height * g->input_width * channels;
    const long outputs_per_sample = g->output_height * g->output_width * channels;
    for (long n = first; n < end; n++) {
        long output_index = n * outputs_per_sample;
        for (long oy = 0; oy < g->output_height; oy++) {
            long first_row = oy * g->stride_height - g->pad_top;
            long end_row = first_row + g->kernel_height;
            if (first_row < 0) first_row = 0;
            if (end_row > g->input_height) end_row = g->input_height;
            for (long ox = 0; ox < g->output_width; ox++) {
                long first_column = ox * g->stride_width - g->pad_left;
                long end_column = first_column + g->kernel_width;
                if (first_column < 0) first_column = 0;
                if (end_column > g->input_width) end_column = g->input_width;
                float *restrict best = output + output_index;
                int32_t *restrict best_offset = argmax + output_index;

                const long start = n * sample_size + (first_row * g->input_width + first_column) * channels;
                for (long c = 0; c < channels; c++) {
                    best[c] = input[start + c];
                    best_offset[c] = (int32_t)(start + c);
                }
                for (long iy = first_row; iy < end_row; iy++) {
                    for (long ix = first_column; ix < end_column; ix++) {
                        const long offset = n * sample_size + (iy * g->input_width + ix) * channels;
                        if (offset == start) continue;
                        const float *restrict values = input + offset;
                        update_maximum(values, (int32_t)offset, channels, best, best_offset);
                    }
                }
                output_index += channels;
            }
        }
    }
}

void nk_max_pool_backward(const float *output_gradient, const int32_t *argmax, const nk_geometry *g, long first, long end,
                          float *input_gradient) {
    const long sample_size = g->input_height * g->input_width * g->channels;
    const long outputs_per_sample = g->output_height * g->output_width * g->channels;
    memset(input_gradient + first * sample_size, 0, sizeof(float) * (end - first) * sample_size);
    for (long index = first * outputs_per_sample; index < end * outputs_per_sample; index++) {
        input_gradient[argmax[index]] += output_gradient[index];
    }
}

static inline uint64_t rotate_left(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t split_mix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void nk_dropout(const float *input, float *mask, float *output, long first_block, long end_block, long count, float rate,
                float scale, uint64_t seed) {
    const long block_size = 65536;
    // An element is kept when its 32-bit draw is at least rate * 2^32.
    double limit = (double)rate * 4294967296.0;
    const uint64_t threshold = limit >= 4294967295.0 ? 4294967295ull : (uint64_t)limit;
    for (long block = first_block; block < end_block; block++) {
        uint64_t seeder = seed ^ ((uint64_t)block * 0xD1B54A32D192ED03ull);
        uint64_t s0 = split_mix(&seeder), s1 = split_mix(&seeder), s2 = split_mix(&seeder), s3 = split_mix(&seeder);
        const long begin = block * block_size;
        const long end = begin + block_size < count ? begin + block_size : count;
        for (long i = begin; i < end; i += 2) {
            const uint64_t bits = rotate_left(s1 * 5, 7) * 9;
            const uint64_t t = s1 << 17;
            s2 ^= s0;
            s3 ^= s1;
            s1 ^= s2;
            s0 ^= s3;
            s2 ^= t;
            s3 = rotate_left(s3, 45);
            mask[i] = (bits & 0xFFFFFFFFull) >= threshold ? scale : 0.0f;
            if (i + 1 < end) mask[i + 1] = (bits >> 32) >= threshold ? scale : 0.0f;
        }
        for (long i = begin; i < end; i++) output[i] = input[i] * mask[i];
    }
}

void nk_multiply(const float *a, const float *b, float *output, long first, long end) {
    for (long i = first; i < end; i++) output[i] = a[i] * b[i];
}
