// Single-threaded matrix products for CPUs with AVX-512: a float32 kernel and a
// bfloat16 kernel (bfloat16 products, float32 sums).
//
// The loops follow the usual blocked scheme. A block of KC rows of op(b) is packed into
// panels of NR columns, and a block of MC rows of op(a) into panels of MR rows. A
// micro-kernel then multiplies one MR-row panel by one NR-column panel into a tile of
// registers. The order of every sum depends only on the sizes, so results are the same
// from run to run.

#include "nk_kernels.h"
#include "lanes.h"

#if !defined(__x86_64__)

// Other CPUs use OpenBLAS.
int nk_gemm_supported(nk_precision precision) {
    (void)precision;
    return 0;
}

int nk_gemm(nk_precision precision, int transpose_a, int transpose_b, long m, long n, long k, float alpha,
            const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    return -1;
}

int nk_gemm_bias_relu(nk_precision precision, long m, long n, long k, const float *a, const float *b, const float *bias,
                      int relu, float *c) {
    return -1;
}

#else

#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
    MR = 12,   // rows of a tile
    NR = 32,   // columns of a tile: two 16-float vectors
    KC = 320,  // largest depth of a packed block (even, for bfloat16 pairs)
    MC = 120,  // rows of op(a) packed at once (a multiple of MR)
    NC = 512,  // columns of op(b) packed at once (a multiple of NR)
};

// A pair of bfloat16 values read or written as one 32-bit word. may_alias lets such a
// word overlap the 16-bit values it is made of without breaking C's aliasing rules.
typedef uint32_t __attribute__((may_alias)) bfloat16_pair;

// MARK: - CPU features

int nk_gemm_supported(nk_precision precision) {
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    if (precision == NK_PRECISION_BFLOAT16) {
        return avx512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bf16");
    }
    return avx512;
}

// MARK: - Per-thread packing buffers

typedef struct {
    void *a;  // MC x KC values of op(a)
    void *b;  // KC x NC values of op(b)
} packing_buffers;

static pthread_key_t buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void free_buffers(void *pointer) {
    packing_buffers *buffers = pointer;
    free(buffers->a);
    free(buffers->b);
    free(buffers);
}

static void make_buffers_key(void) { pthread_key_create(&buffers_key, free_buffers); }

// Returns the calling thread's buffers, allocated on first use and freed when the thread
// exits; NULL when memory runs out. Sized for float32, which bfloat16 halves.
static packing_buffers *thread_buffers(void) {
    pthread_once(&buffers_once, make_buffers_key);
    packing_buffers *buffers = pthread_getspecific(buffers_key);
    if (buffers) return buffers;
    buffers = calloc(1, sizeof *buffers);
    if (!buffers) return NULL;
    buffers->a = aligned_alloc(64, sizeof(float) * MC * KC);
    buffers->b = aligned_alloc(64, sizeof(float) * KC * NC);
    if (!buffers->a || !buffers->b || pthread_setspecific(buffers_key, buffers) != 0) {
        free_buffers(buffers);
        return NULL;
    }
    return buffers;
}

// MARK: - Storing a tile

// Writes the valid rows x columns of `tile` (MR x NR, row-major) into c:
// c = alpha * tile + beta * c, where beta applies only on the first depth block
// (`accumulate` is 0) and later blocks add.
__attribute__((target("avx512f")))
static void store_tile(const float *tile, float *c, long ldc, long rows, long columns, float alpha, float beta,
                       int accumulate) {
    __m512 alpha_vector = _mm512_set1_ps(alpha);
    __m512 beta_vector = _mm512_set1_ps(beta);
    for (long r = 0; r < rows; r++) {
        float *row = c + r * ldc;
        for (long j = 0; j < columns; j += 16) {
            long remaining = columns - j;
            __mmask16 mask = first_lanes(remaining);
            __m512 product = _mm512_mul_ps(alpha_vector, _mm512_loadu_ps(tile + r * NR + j));
            __m512 result;
            if (accumulate) {
                result = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, row + j), product);
            } else if (beta == 0) {
                result = product;  // c may hold NaN or garbage when beta is 0
            } else {
                result = _mm512_fmadd_ps(beta_vector, _mm512_maskz_loadu_ps(mask, row + j), product);
            }
            _mm512_mask_storeu_ps(row + j, mask, result);
        }
    }
}

// How a micro-kernel writes its sums to c.
enum {
    WRITE = 0,  // c = sums, a full tile
    ADD = 1,    // c += sums, a full tile
    TILE = 2,   // into a MR x NR buffer (row stride NR), for store_tile to finish
};

// What the last depth block does to a finished tile: add a bias per column (when `bias`
// is not NULL; it points at the tile's first column) and apply ReLU (when `relu`).
typedef struct {
    const float *bias;
    int relu;
} epilogue;

// Writes a tile of sums to c in the given `mode`, then finishes it with `finish` unless
// the mode is TILE. With TILE, c is the MR x NR buffer.
__attribute__((target("avx512f"), always_inline))
static inline void store_sums(__m512 sums[MR][2], float *c, long ldc, int mode, epilogue finish) {
    if (mode == TILE) ldc = NR;
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    int has_bias = mode != TILE && finish.bias;
    int relu = mode != TILE && finish.relu;
    if (has_bias) {
        bias0 = _mm512_loadu_ps(finish.bias);
        bias1 = _mm512_loadu_ps(finish.bias + 16);
    }
    _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {
        float *row = c + r * ldc;
        if (mode == ADD) {
            sums[r][0] = _mm512_add_ps(sums[r][0], _mm512_loadu_ps(row));
            sums[r][1] = _mm512_add_ps(sums[r][1], _mm512_loadu_ps(row + 16));
        }
        if (has_bias) {
            sums[r][0] = _mm512_add_ps(sums[r][0], bias0);
            sums[r][1] = _mm512_add_ps(sums[r][1], bias1);
        }
        if (relu) {
            // max(0, x) returns x when x is NaN, as `x < 0 ? 0 : x` does.
            sums[r][0] = _mm512_max_ps(_mm512_setzero_ps(), sums[r][0]);
            sums[r][1] = _mm512_max_ps(_mm512_setzero_ps(), sums[r][1]);
        }
        _mm512_storeu_ps(row, sums[r][0]);
        _mm512_storeu_ps(row + 16, sums[r][1]);
    }
}

// Finishes a partial tile already stored in c.
static void finish_tile(float *c, long ldc, long rows, long columns, epilogue finish) {
    for (long r = 0; r < rows; r++) {
        float *row = c + r * ldc;
        if (finish.bias) {
            for (long j = 0; j < columns; j++) row[j] += finish.bias[j];
        }
        if (finish.relu) {
            for (long j = 0; j < columns; j++) row[j] = row[j] < 0 ? 0 : row[j];
        }
    }
}

// MARK: - float32

// Packs rows [i0, i0 + rows) x depth [p0, p0 + depth) of op(a) into panels of MR rows.
// Untransposed a keeps each panel row-major, a row every KC values. Transposed a stores
// a panel depth-major, MR values per depth step, so that packing reads a contiguously.
__attribute__((target("avx512f")))
static void pack_a_f32(const float *a, long lda, int transpose, long i0, long rows, long p0, long depth, float *packed) {
    for (long panel = 0; panel * MR < rows; panel++) {
        float *out = packed + panel * MR * KC;
        long first = i0 + panel * MR;
        long valid = rows - panel * MR < MR ? rows - panel * MR : MR;
        if (!transpose) {
            for (long r = 0; r < MR; r++) {
                if (r < valid) {
                    memcpy(out + r * KC, a + (first + r) * lda + p0, sizeof(float) * depth);
                } else {
                    memset(out + r * KC, 0, sizeof(float) * depth);
                }
            }
        } else {
            __mmask16 lanes = first_lanes(valid);
            for (long p = 0; p < depth; p++) {
                __m512 values = _mm512_maskz_loadu_ps(lanes, a + (p0 + p) * lda + first);
                _mm512_mask_storeu_ps(out + p * MR, first_lanes(MR), values);
            }
        }
    }
}

// Packs depth [p0, p0 + depth) x columns [j0, j0 + columns) of op(b) into panels of NR
// columns, each depth-major (NR values per depth step), zero beyond the last column.
__attribute__((target("avx512f")))
static void pack_b_f32(const float *b, long ldb, int transpose, long p0, long depth, long j0, long columns, float *packed) {
    for (long panel = 0; panel * NR < columns; panel++) {
        float *out = packed + panel * NR * KC;
        long first = j0 + panel * NR;
        long valid = columns - panel * NR < NR ? columns - panel * NR : NR;
        for (long p = 0; p < depth; p++) {
            float *row = out + p * NR;
            if (!transpose) {
                const float *source = b + (p0 + p) * ldb + first;
                for (long half = 0; half < NR / 16; half++) {
                    long count = valid - half * 16;
                    __mmask16 lanes = first_lanes(count);
                    _mm512_store_ps(row + half * 16, _mm512_maskz_loadu_ps(lanes, source + half * 16));
                }
            } else {
                for (long j = 0; j < NR; j++) row[j] = j < valid ? b[(first + j) * ldb + p0 + p] : 0;
            }
        }
    }
}

// The MR x NR tile of a packed a panel times a packed b panel over `depth` steps.
// Element (r, p) of the a panel is at a[r * row_step + p * depth_step].
#define DEFINE_KERNEL_F32(name, row_step, depth_step)                                       \
    __attribute__((target("avx512f")))                                                      \
    static void name(long depth, const float *a, const float *b, float *c, long ldc, int mode, epilogue finish) { \
        __m512 sums[MR][2];                                                                 \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {                   \
            sums[r][0] = _mm512_setzero_ps();                                               \
            sums[r][1] = _mm512_setzero_ps();                                               \
        }                                                                                   \
        for (long p = 0; p < depth; p++) {                                                  \
            __m512 b0 = _mm512_load_ps(b + p * NR);                                         \
            __m512 b1 = _mm512_load_ps(b + p * NR + 16);                                    \
            _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {               \
                __m512 value = _mm512_set1_ps(a[r * (row_step) + p * (depth_step)]);        \
                sums[r][0] = _mm512_fmadd_ps(value, b0, sums[r][0]);                        \
                sums[r][1] = _mm512_fmadd_ps(value, b1, sums[r][1]);                        \
            }                                                                               \
        }                                                                                   \
        store_sums(sums, c, ldc, mode, finish);                                             \
    }

DEFINE_KERNEL_F32(kernel_f32_rows, KC, 1)
DEFINE_KERNEL_F32(kernel_f32_depth, 1, MR)

// MARK: - bfloat16

// Rounds float32 to bfloat16, to nearest with ties to even; NaN stays NaN.
static inline uint16_t to_bfloat16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

// Converts `count` floats to bfloat16, 16 at a time.
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void convert_bfloat16(const float *source, uint16_t *destination, long count) {
    long index = 0;
    for (; index + 16 <= count; index += 16) {
        __m256bh converted = _mm512_cvtneps_pbh(_mm512_loadu_ps(source + index));
        _mm256_storeu_si256((__m256i *)(destination + index), (__m256i)converted);
    }
    for (; index < count; index++) destination[index] = to_bfloat16(source[index]);
}

// Rounds 16 floats of `even` and 16 of `odd` to bfloat16 and interleaves them into 16
// pairs (even[j], odd[j]).
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static inline __m512i interleave_bfloat16(__m512 even, __m512 odd) {
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                           21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512i halves = (__m512i)_mm512_cvtne2ps_pbh(odd, even);  // even in the low half, odd in the high
    return _mm512_permutexvar_epi16(order, halves);
}

// As pack_a_f32, in bfloat16 with the depth padded to an even count. Untransposed a keeps
// rows of KC values; transposed a stores, per pair of depth steps, MR pairs.
__attribute__((target("avx512f,avx512bw,avx512bf16,avx512vl")))
static void pack_a_bf16(const float *a, long lda, int transpose, long i0, long rows, long p0, long depth,
                        uint16_t *packed) {
    long pairs = (depth + 1) / 2;
    for (long panel = 0; panel * MR < rows; panel++) {
        uint16_t *out = packed + panel * MR * KC;
        long first = i0 + panel * MR;
        long valid = rows - panel * MR < MR ? rows - panel * MR : MR;
        if (!transpose) {
            for (long r = 0; r < MR; r++) {
                uint16_t *row = out + r * KC;
                if (r < valid) {
                    convert_bfloat16(a + (first + r) * lda + p0, row, depth);
                    if (depth % 2) row[depth] = 0;
                } else {
                    memset(row, 0, sizeof(uint16_t) * 2 * pairs);
                }
            }
        } else {
            __mmask16 lanes = first_lanes(valid);
            for (long q = 0; q < pairs; q++) {
                const float *even = a + (p0 + 2 * q) * lda + first;
                __m512 odd = 2 * q + 1 < depth ? _mm512_maskz_loadu_ps(lanes, even + lda) : _mm512_setzero_ps();
                __m512i pair = interleave_bfloat16(_mm512_maskz_loadu_ps(lanes, even), odd);
                _mm512_mask_storeu_epi16(out + q * MR * 2, (__mmask32)((1ull << (2 * MR)) - 1), pair);
            }
        }
    }
}

// As pack_b_f32, in bfloat16: per pair of depth steps, NR pairs (even step, odd step).
__attribute__((target("avx512f,avx512bw,avx512bf16,avx512vl")))
static void pack_b_bf16(const float *b, long ldb, int transpose, long p0, long depth, long j0, long columns,
                        uint16_t *packed) {
    long pairs = (depth + 1) / 2;
    for (long panel = 0; panel * NR < columns; panel++) {
        uint16_t *out = packed + panel * NR * KC;
        bfloat16_pair *out_pairs = (bfloat16_pair *)out;
        long first = j0 + panel * NR;
        long valid = columns - panel * NR < NR ? columns - panel * NR : NR;
        if (!transpose) {
            for (long q = 0; q < pairs; q++) {
                const float *even = b + (p0 + 2 * q) * ldb + first;
                for (long half = 0; half < NR / 16; half++) {
                    long count = valid - half * 16;
                    __mmask16 lanes = first_lanes(count);
                    __m512 odd = 2 * q + 1 < depth ? _mm512_maskz_loadu_ps(lanes, even + ldb + half * 16)
                                                   : _mm512_setzero_ps();
                    __m512i pair = interleave_bfloat16(_mm512_maskz_loadu_ps(lanes, even + half * 16), odd);
                    _mm512_store_si512(out + q * NR * 2 + half * 32, pair);
                }
            }
        } else {
            // Column j of op(b) is row j of b: its depth steps are adjacent, so each
            // converted pair of a row is already one (even, odd) pair.
            uint16_t row[KC] __attribute__((aligned(64)));
            const bfloat16_pair *row_pairs = (const bfloat16_pair *)row;
            for (long j = 0; j < NR; j++) {
                if (j < valid) {
                    convert_bfloat16(b + (first + j) * ldb + p0, row, depth);
                    if (depth % 2) row[depth] = 0;
                } else {
                    memset(row, 0, sizeof(uint16_t) * 2 * pairs);
                }
                for (long q = 0; q < pairs; q++) out_pairs[q * NR + j] = row_pairs[q];
            }
        }
    }
}

// The MR x NR tile over `pairs` pairs of depth steps; one dot-product instruction takes
// a pair per lane. The pair (r, q) of the a panel is at a32[r * row_step + q * pair_step].
#define DEFINE_KERNEL_BF16(name, row_step, pair_step)                                       \
    __attribute__((target("avx512f,avx512bf16")))                                           \
    static void name(long pairs, const uint16_t *a, const uint16_t *b, float *c, long ldc, int mode, epilogue finish) { \
        const bfloat16_pair *a32 = (const bfloat16_pair *)a;                                \
        __m512 sums[MR][2];                                                                 \
        _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {                   \
            sums[r][0] = _mm512_setzero_ps();                                               \
            sums[r][1] = _mm512_setzero_ps();                                               \
        }                                                                                   \
        for (long q = 0; q < pairs; q++) {                                                  \
            __m512bh b0 = (__m512bh)_mm512_load_si512(b + q * NR * 2);                      \
            __m512bh b1 = (__m512bh)_mm512_load_si512(b + q * NR * 2 + 32);                 \
            _Pragma("clang loop unroll(full)") for (int r = 0; r < MR; r++) {               \
                __m512bh value = (__m512bh)_mm512_set1_epi32(                               \
                    (int)a32[r * (row_step) + q * (pair_step)]);                            \
                sums[r][0] = _mm512_dpbf16_ps(sums[r][0], value, b0);                       \
                sums[r][1] = _mm512_dpbf16_ps(sums[r][1], value, b1);                       \
            }                                                                               \
        }                                                                                   \
        store_sums(sums, c, ldc, mode, finish);                                             \
    }

DEFINE_KERNEL_BF16(kernel_bf16_rows, KC / 2, 1)
DEFINE_KERNEL_BF16(kernel_bf16_depth, 1, MR)

// MARK: - Driver

// c = alpha * op(a) * op(b) + beta * c, then `last` applied to the result.
static int gemm(nk_precision precision, int transpose_a, int transpose_b, long m, long n, long k, float alpha,
                const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc, epilogue last) {
    if (m <= 0 || n <= 0) return 0;
    packing_buffers *buffers = thread_buffers();
    if (!buffers) return -1;
    int bfloat16 = precision == NK_PRECISION_BFLOAT16;
    float tile[MR * NR] __attribute__((aligned(64)));

    if (k <= 0 || alpha == 0) {
        // No products, as in BLAS: c = beta * c, with 0 * c giving 0 even where c contains NaN.
        memset(tile, 0, sizeof tile);
        for (long i = 0; i < m; i += MR) {
            for (long j = 0; j < n; j += NR) {
                long rows = m - i < MR ? m - i : MR, columns = n - j < NR ? n - j : NR;
                store_tile(tile, c + i * ldc + j, ldc, rows, columns, alpha, beta, 0);
                finish_tile(c + i * ldc + j, ldc, rows, columns,
                            (epilogue){last.bias ? last.bias + j : NULL, last.relu});
            }
        }
        return 0;
    }

    // Depth blocks of equal, even size, so no block is left with a few steps.
    long blocks = (k + KC - 1) / KC;
    long block_depth = (k + blocks - 1) / blocks;
    block_depth += block_depth % 2;
    int plain = alpha == 1 && (beta == 0 || beta == 1);
    for (long j0 = 0; j0 < n; j0 += NC) {
        long columns = n - j0 < NC ? n - j0 : NC;
        for (long p0 = 0; p0 < k; p0 += block_depth) {
            long depth = k - p0 < block_depth ? k - p0 : block_depth;
            int accumulate = p0 > 0;
            int is_last = p0 + depth >= k;
            if (bfloat16) {
                pack_b_bf16(b, ldb, transpose_b, p0, depth, j0, columns, buffers->b);
            } else {
                pack_b_f32(b, ldb, transpose_b, p0, depth, j0, columns, buffers->b);
            }
            for (long i0 = 0; i0 < m; i0 += MC) {
                long rows = m - i0 < MC ? m - i0 : MC;
                if (bfloat16) {
                    pack_a_bf16(a, lda, transpose_a, i0, rows, p0, depth, buffers->a);
                } else {
                    pack_a_f32(a, lda, transpose_a, i0, rows, p0, depth, buffers->a);
                }
                for (long jr = 0; jr < columns; jr += NR) {
                    for (long ir = 0; ir < rows; ir += MR) {
                        long tile_rows = rows - ir < MR ? rows - ir : MR;
                        long tile_columns = columns - jr < NR ? columns - jr : NR;
                        float *target = c + (i0 + ir) * ldc + j0 + jr;
                        int full = plain && tile_rows == MR && tile_columns == NR;
                        int mode = TILE;
                        if (full) mode = accumulate || beta == 1 ? ADD : WRITE;
                        float *destination = mode == TILE ? tile : target;
                        epilogue finish = {NULL, 0};
                        if (is_last) finish = (epilogue){last.bias ? last.bias + j0 + jr : NULL, last.relu};
                        long panel_a = (ir / MR) * MR * KC;
                        long panel_b = (jr / NR) * NR * KC;
                        if (bfloat16) {
                            const uint16_t *pa = (const uint16_t *)buffers->a + panel_a;
                            const uint16_t *pb = (const uint16_t *)buffers->b + panel_b;
                            long pairs = (depth + 1) / 2;
                            if (transpose_a) {
                                kernel_bf16_depth(pairs, pa, pb, destination, ldc, mode, finish);
                            } else {
                                kernel_bf16_rows(pairs, pa, pb, destination, ldc, mode, finish);
                            }
                        } else {
                            const float *pa = (const float *)buffers->a + panel_a;
                            const float *pb = (const float *)buffers->b + panel_b;
                            if (transpose_a) {
                                kernel_f32_depth(depth, pa, pb, destination, ldc, mode, finish);
                            } else {
                                kernel_f32_rows(depth, pa, pb, destination, ldc, mode, finish);
                            }
                        }
                        if (mode == TILE) {
                            store_tile(tile, target, ldc, tile_rows, tile_columns, alpha, beta, accumulate);
                            finish_tile(target, ldc, tile_rows, tile_columns, finish);
                        }
                    }
                }
            }
        }
    }
    return 0;
}

int nk_gemm(nk_precision precision, int transpose_a, int transpose_b, long m, long n, long k, float alpha,
            const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    return gemm(precision, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, (epilogue){NULL, 0});
}

int nk_gemm_bias_relu(nk_precision precision, long m, long n, long k, const float *a, const float *b, const float *bias,
                      int relu, float *c) {
    return gemm(precision, 0, 0, m, n, k, 1, a, k, b, n, 0, c, n, (epilogue){bias, relu});
}

#endif
