#include "nk_kernels.h"
#include "lanes.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static _Atomic int generic_only = 0;

void nk_use_generic_kernels(int enabled) { generic_only = enabled != 0; }

int nk_has_avx512(void) {
#if defined(__x86_64__)
    if (generic_only) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

static inline int inside(long y, long x, const nk_geometry *g) {
    return y >= 0 && y < g->input_height && x >= 0 && x < g->input_width;
}

// im2col with `copy_run` copying each run of a kernel row that lies inside the input.
__attribute__((always_inline))
static inline void im2col_body(const float *input, const nk_geometry *g, long first, long end, float *columns,
                               void (*copy_run)(float *, const float *, long)) {
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
                        copy_run(row, sample + (iy * g->input_width + ix0) * channels, g->kernel_width * channels);
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

__attribute__((always_inline))
static inline void copy_with_memcpy(float *destination, const float *source, long count) {
    memcpy(destination, source, sizeof(float) * count);
}

#if defined(__x86_64__)
// Copies with 16-float moves, the last one masked: cheaper than a call to memcpy for the
// short runs of im2col (3 floats for a 3x3 kernel over one channel).
__attribute__((target("avx512f"), always_inline))
static inline void copy_with_avx512(float *destination, const float *source, long count) {
    long index = 0;
    for (; index + 16 <= count; index += 16) _mm512_storeu_ps(destination + index, _mm512_loadu_ps(source + index));
    if (index < count) {
        const __mmask16 lanes = first_lanes(count - index);
        _mm512_mask_storeu_ps(destination + index, lanes, _mm512_maskz_loadu_ps(lanes, source + index));
    }
}

__attribute__((target("avx512f")))
static void im2col_avx512(const float *input, const nk_geometry *g, long first, long end, float *columns) {
    im2col_body(input, g, first, end, columns, copy_with_avx512);
}
#endif

void nk_im2col(const float *input, const nk_geometry *g, long first, long end, float *columns) {
#if defined(__x86_64__)
    if (nk_has_avx512()) {
        im2col_avx512(input, g, first, end, columns);
        return;
    }
#endif
    im2col_body(input, g, first, end, columns, copy_with_memcpy);
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

// The window of output (oy, ox) of sample n: input rows [first_row, end_row) and columns
// [first_column, end_column), clipped to the input.
typedef struct {
    long first_row, end_row, first_column, end_column;
} pool_window;

static inline pool_window window_of(const nk_geometry *g, long oy, long ox) {
    pool_window w;
    w.first_row = oy * g->stride_height - g->pad_top;
    w.end_row = w.first_row + g->kernel_height;
    w.first_column = ox * g->stride_width - g->pad_left;
    w.end_column = w.first_column + g->kernel_width;
    if (w.first_row < 0) w.first_row = 0;
    if (w.end_row > g->input_height) w.end_row = g->input_height;
    if (w.first_column < 0) w.first_column = 0;
    if (w.end_column > g->input_width) w.end_column = g->input_width;
    return w;
}

static void max_pool_generic(const float *input, const nk_geometry *g, long first, long end, float *output,
                             int32_t *argmax) {
    const long channels = g->channels;
    const long sample_size = g->input_height * g->input_width * channels;
    const long outputs_per_sample = g->output_height * g->output_width * channels;
    for (long n = first; n < end; n++) {
        long output_index = n * outputs_per_sample;
        for (long oy = 0; oy < g->output_height; oy++) {
            for (long ox = 0; ox < g->output_width; ox++) {
                const pool_window w = window_of(g, oy, ox);
                float *restrict best = output + output_index;
                int32_t *restrict best_offset = argmax + output_index;

                const long start = n * sample_size + (w.first_row * g->input_width + w.first_column) * channels;
                for (long c = 0; c < channels; c++) {
                    best[c] = input[start + c];
                    best_offset[c] = (int32_t)(start + c);
                }
                for (long iy = w.first_row; iy < w.end_row; iy++) {
                    for (long ix = w.first_column; ix < w.end_column; ix++) {
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

#if defined(__x86_64__)
// The same result as max_pool_generic for channels a multiple of 16, with each group of
// 16 channels' maxima and offsets kept in registers across the window.
__attribute__((target("avx512f")))
static void max_pool_avx512(const float *input, const nk_geometry *g, long first, long end, float *output,
                            int32_t *argmax) {
    const long channels = g->channels;
    const long sample_size = g->input_height * g->input_width * channels;
    const long outputs_per_sample = g->output_height * g->output_width * channels;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (long n = first; n < end; n++) {
        long output_index = n * outputs_per_sample;
        for (long oy = 0; oy < g->output_height; oy++) {
            for (long ox = 0; ox < g->output_width; ox++) {
                const pool_window w = window_of(g, oy, ox);
                const long start = n * sample_size + (w.first_row * g->input_width + w.first_column) * channels;
                for (long c = 0; c < channels; c += 16) {
                    __m512 best = _mm512_loadu_ps(input + start + c);
                    __m512i best_offset = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(start + c)), lane);
                    for (long iy = w.first_row; iy < w.end_row; iy++) {
                        for (long ix = w.first_column; ix < w.end_column; ix++) {
                            const long offset = n * sample_size + (iy * g->input_width + ix) * channels + c;
                            if (offset == start + c) continue;
                            const __m512 value = _mm512_loadu_ps(input + offset);
                            // Greater or NaN, and the current best is not NaN.
                            const __mmask16 takes = _mm512_cmp_ps_mask(value, best, _CMP_NLE_UQ) &
                                                    _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
                            best = _mm512_mask_mov_ps(best, takes, value);
                            best_offset = _mm512_mask_mov_epi32(
                                best_offset, takes, _mm512_add_epi32(_mm512_set1_epi32((int32_t)offset), lane));
                        }
                    }
                    _mm512_storeu_ps(output + output_index + c, best);
                    _mm512_storeu_si512(argmax + output_index + c, best_offset);
                }
                output_index += channels;
            }
        }
    }
}

#endif

void nk_max_pool(const float *input, const nk_geometry *g, long first, long end, float *output, int32_t *argmax) {
#if defined(__x86_64__)
    if (g->channels % 16 == 0 && nk_has_avx512()) {
        max_pool_avx512(input, g, first, end, output, argmax);
        return;
    }
#endif
    max_pool_generic(input, g, first, end, output, argmax);
}

static void max_pool_backward_generic(const float *output_gradient, const int32_t *argmax, const nk_geometry *g,
                                      long first, long end, float *input_gradient) {
    const long sample_size = g->input_height * g->input_width * g->channels;
    const long outputs_per_sample = g->output_height * g->output_width * g->channels;
    memset(input_gradient + first * sample_size, 0, sizeof(float) * (end - first) * sample_size);
    for (long index = first * outputs_per_sample; index < end * outputs_per_sample; index++) {
        input_gradient[argmax[index]] += output_gradient[index];
    }
}

#if defined(__x86_64__)
// The same result as the generic version, for windows that neither overlap nor reach
// into padding and for channels a multiple of 16. Each input position then lies in at
// most one window, so every input gradient is written once, with no zeroing pass: the
// output gradient where the argmax points at it, and 0 elsewhere.
__attribute__((target("avx512f")))
static void max_pool_backward_tiled(const float *output_gradient, const int32_t *argmax, const nk_geometry *g,
                                    long first, long end, float *input_gradient) {
    const long channels = g->channels;
    const long row_size = g->input_width * channels;
    const long sample_size = g->input_height * row_size;
    const long outputs_per_sample = g->output_height * g->output_width * channels;
    const long covered_rows = g->output_height * g->stride_height;
    const long covered_columns = g->output_width * g->stride_width;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (long n = first; n < end; n++) {
        float *sample = input_gradient + n * sample_size;
        for (long oy = 0; oy < g->output_height; oy++) {
            for (long ox = 0; ox < g->output_width; ox++) {
                const long output_index = n * outputs_per_sample + (oy * g->output_width + ox) * channels;
                for (long c = 0; c < channels; c += 16) {
                    const __m512 gradient = _mm512_loadu_ps(output_gradient + output_index + c);
                    const __m512i target = _mm512_loadu_si512(argmax + output_index + c);
                    for (long ky = 0; ky < g->kernel_height; ky++) {
                        for (long kx = 0; kx < g->kernel_width; kx++) {
                            const long offset = ((oy * g->stride_height + ky) * g->input_width + ox * g->stride_width + kx) *
                                                    channels + c;
                            const __m512i position = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(n * sample_size + offset)), lane);
                            const __mmask16 hit = _mm512_cmpeq_epi32_mask(target, position);
                            // Adding onto +0 turns a -0 gradient into +0, as the generic sum does.
                            const __m512 routed = _mm512_add_ps(_mm512_setzero_ps(), _mm512_maskz_mov_ps(hit, gradient));
                            _mm512_storeu_ps(sample + offset, routed);
                        }
                    }
                }
            }
            // Columns right of the last window get no gradient.
            for (long ky = 0; ky < g->stride_height; ky++) {
                float *row = sample + (oy * g->stride_height + ky) * row_size;
                memset(row + covered_columns * channels, 0, sizeof(float) * (g->input_width - covered_columns) * channels);
            }
        }
        // Nor do rows below the last window.
        memset(sample + covered_rows * row_size, 0, sizeof(float) * (g->input_height - covered_rows) * row_size);
    }
}
#endif

void nk_max_pool_backward(const float *output_gradient, const int32_t *argmax, const nk_geometry *g, long first, long end,
                          float *input_gradient) {
#if defined(__x86_64__)
    const int tiled = g->stride_height == g->kernel_height && g->stride_width == g->kernel_width && g->pad_top == 0 &&
                      g->pad_left == 0 && g->output_height * g->stride_height <= g->input_height &&
                      g->output_width * g->stride_width <= g->input_width;
    if (tiled && g->channels % 16 == 0 && nk_has_avx512()) {
        max_pool_backward_tiled(output_gradient, argmax, g, first, end, input_gradient);
        return;
    }
#endif
    max_pool_backward_generic(output_gradient, argmax, g, first, end, input_gradient);
}

static inline uint64_t rotate_left(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t split_mix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Dropout draws from DROPOUT_LANES xoshiro256** streams per block, one per 64-bit lane
// of an AVX-512 register. Step t of lane l yields 64 bits: the low 32 decide element
// 16 t + 2 l of the block and the high 32 element 16 t + 2 l + 1. The scalar and
// AVX-512 versions give the same masks.
enum { DROPOUT_BLOCK = 65536, DROPOUT_LANES = 8 };

typedef struct {
    uint64_t s[4][DROPOUT_LANES];
} dropout_streams;

static dropout_streams seed_streams(uint64_t seed, long block) {
    dropout_streams streams;
    uint64_t seeder = seed ^ ((uint64_t)block * 0xD1B54A32D192ED03ull);
    for (int lane = 0; lane < DROPOUT_LANES; lane++) {
        for (int word = 0; word < 4; word++) streams.s[word][lane] = split_mix(&seeder);
    }
    return streams;
}

// An element is kept when its 32-bit draw is at least this.
static uint32_t keep_threshold(float rate) {
    double limit = (double)rate * 4294967296.0;
    return limit >= 4294967295.0 ? 4294967295u : (uint32_t)limit;
}

static void dropout_block_scalar(const float *input, float *mask, float *output, long begin, long end, uint32_t threshold,
                                 float scale, dropout_streams streams) {
    for (long step = begin; step < end; step += 2 * DROPOUT_LANES) {
        for (int lane = 0; lane < DROPOUT_LANES; lane++) {
            uint64_t *s0 = &streams.s[0][lane], *s1 = &streams.s[1][lane];
            uint64_t *s2 = &streams.s[2][lane], *s3 = &streams.s[3][lane];
            const uint64_t bits = rotate_left(*s1 * 5, 7) * 9;
            const uint64_t t = *s1 << 17;
            *s2 ^= *s0;
            *s3 ^= *s1;
            *s1 ^= *s2;
            *s0 ^= *s3;
            *s2 ^= t;
            *s3 = rotate_left(*s3, 45);
            for (int half = 0; half < 2; half++) {
                const long i = step + 2 * lane + half;
                if (i >= end) break;
                const uint32_t draw = (uint32_t)(bits >> (32 * half));
                mask[i] = draw >= threshold ? scale : 0.0f;
                output[i] = input[i] * mask[i];
            }
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static void dropout_block_avx512(const float *input, float *mask, float *output, long begin, long end,
                                 uint32_t threshold, float scale, dropout_streams streams) {
    __m512i s0 = _mm512_loadu_si512(streams.s[0]), s1 = _mm512_loadu_si512(streams.s[1]);
    __m512i s2 = _mm512_loadu_si512(streams.s[2]), s3 = _mm512_loadu_si512(streams.s[3]);
    const __m512i limit = _mm512_set1_epi32((int32_t)threshold);
    const __m512 kept_scale = _mm512_set1_ps(scale);
    for (long i = begin; i < end; i += 16) {
        // rotate_left(s1 * 5, 7) * 9, with the products as shifts and adds.
        const __m512i times5 = _mm512_add_epi64(_mm512_slli_epi64(s1, 2), s1);
        const __m512i rotated = _mm512_rol_epi64(times5, 7);
        const __m512i bits = _mm512_add_epi64(_mm512_slli_epi64(rotated, 3), rotated);
        const __m512i t = _mm512_slli_epi64(s1, 17);
        s2 = _mm512_xor_si512(s2, s0);
        s3 = _mm512_xor_si512(s3, s1);
        s1 = _mm512_xor_si512(s1, s2);
        s0 = _mm512_xor_si512(s0, s3);
        s2 = _mm512_xor_si512(s2, t);
        s3 = _mm512_rol_epi64(s3, 45);

        const long remaining = end - i;
        const __mmask16 lanes = first_lanes(remaining);
        const __mmask16 keep = _mm512_cmp_epu32_mask(bits, limit, _MM_CMPINT_NLT);
        const __m512 values = _mm512_maskz_mov_ps(keep, kept_scale);
        _mm512_mask_storeu_ps(mask + i, lanes, values);
        _mm512_mask_storeu_ps(output + i, lanes, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, input + i), values));
    }
}
#endif

void nk_dropout(const float *input, float *mask, float *output, long first_block, long end_block, long count, float rate,
                float scale, uint64_t seed) {
    const uint32_t threshold = keep_threshold(rate);
    for (long block = first_block; block < end_block; block++) {
        const long begin = block * DROPOUT_BLOCK;
        const long end = begin + DROPOUT_BLOCK < count ? begin + DROPOUT_BLOCK : count;
        const dropout_streams streams = seed_streams(seed, block);
#if defined(__x86_64__)
        if (nk_has_avx512()) {
            dropout_block_avx512(input, mask, output, begin, end, threshold, scale, streams);
            continue;
        }
#endif
        dropout_block_scalar(input, mask, output, begin, end, threshold, scale, streams);
    }
}

void nk_multiply(const float *a, const float *b, float *output, long first, long end) {
    for (long i = first; i < end; i++) output[i] = a[i] * b[i];
}

void nk_add_bias_relu(float *values, long rows, long columns, const float *bias, float *logits, int relu) {
    for (long r = 0; r < rows; r++) {
        float *restrict row = values + r * columns;
        if (bias) {
            for (long c = 0; c < columns; c++) row[c] += bias[c];
        }
        if (logits) memcpy(logits + r * columns, row, sizeof(float) * columns);
        if (relu) {
            // `<` leaves NaN in place, so a diverging model is caught by the loss.
            for (long c = 0; c < columns; c++) row[c] = row[c] < 0 ? 0 : row[c];
        }
    }
}

// One block of up to LOCAL columns of nk_relu_backward, rows `stride` floats apart,
// with the column sums in `sums`, a local array that aliases nothing, so the loop
// vectorizes. `out` may be `g`: each element is read before it is written.
static void relu_backward_block(const float *g, const float *y, float *out, long rows, long columns, long stride,
                                int relu, float *restrict sums) {
    for (long r = 0; r < rows; r++) {
        const float *gr = g + r * stride;
        const float *yr = y + r * stride;
        float *outr = out + r * stride;
        if (relu) {
            for (long c = 0; c < columns; c++) {
                // Both loads up front, so the select needs no branch.
                const float gradient = gr[c];
                const float value = yr[c] > 0 ? gradient : 0;
                outr[c] = value;
                sums[c] += value;
            }
        } else {
            for (long c = 0; c < columns; c++) {
                const float gradient = gr[c];
                outr[c] = gradient;
                sums[c] += gradient;
            }
        }
    }
}

void nk_relu_backward(const float *output_gradient, const float *output, float *result, long rows, long columns, int relu,
                      float *column_sums) {
    enum { LOCAL = 256 };
    float sums[LOCAL];
    for (long first = 0; first < columns; first += LOCAL) {
        const long width = columns - first < LOCAL ? columns - first : LOCAL;
        for (long c = 0; c < width; c++) sums[c] = column_sums ? column_sums[first + c] : 0;
        relu_backward_block(output_gradient + first, output + first, result + first, rows, width, columns, relu, sums);
        if (column_sums) memcpy(column_sums + first, sums, sizeof(float) * width);
    }
}
