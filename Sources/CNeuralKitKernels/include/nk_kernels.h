#ifndef NK_KERNELS_H
#define NK_KERNELS_H

#include <stdint.h>

/// Sizes of a convolution or pooling window over an NHWC batch (channels last).
typedef struct {
    long batch, input_height, input_width, channels;
    long kernel_height, kernel_width, stride_height, stride_width;
    long pad_top, pad_left, output_height, output_width;
} nk_geometry;

/// Whether this CPU (and its operating system) runs AVX-512F code and the AVX-512
/// versions of im2col, pooling and dropout are switched on.
int nk_has_avx512(void);

/// Switches im2col, pooling and dropout to their generic versions (nonzero) or back, so
/// that tests can compare the two. Both versions give the same results.
void nk_use_generic_kernels(int enabled);

/// Copies the receptive fields of samples [first, end) into rows of `columns`, one row
/// of kernel_height * kernel_width * channels values per output position, in
/// (kernel row, kernel column, channel) order. Padded positions are zero.
void nk_im2col(const float *input, const nk_geometry *g, long first, long end, float *columns);

/// The adjoint of nk_im2col: adds each row back onto the input positions it came from.
/// Overwrites the input gradient of samples [first, end).
void nk_col2im(const float *columns, const nk_geometry *g, long first, long end, float *input_gradient);

/// Max-pools samples [first, end) and stores, for each output, the flat input offset of
/// its maximum: the first one on ties, and any NaN in the window makes the output NaN.
void nk_max_pool(const float *input, const nk_geometry *g, long first, long end, float *output, int32_t *argmax);

/// Routes the output gradients of samples [first, end) to their maxima; overwrites the
/// input gradient of those samples.
void nk_max_pool_backward(const float *output_gradient, const int32_t *argmax, const nk_geometry *g, long first, long end,
                          float *input_gradient);

/// Applies dropout to the blocks [first_block, end_block) of `count` elements: `mask`
/// receives 0 or `scale` (an element is kept with probability 1 - rate) and
/// `output = input * mask`. Each block of 65,536 elements draws from its own
/// xoshiro256** stream seeded from `seed` and the block index, so the result does not
/// depend on how blocks are split over threads. A block's draws come from eight
/// interleaved streams, so that AVX-512 computes them side by side.
void nk_dropout(const float *input, float *mask, float *output, long first_block, long end_block, long count, float rate,
                float scale, uint64_t seed);

/// Computes `output[i] = a[i] * b[i]` for i in [first, end).
void nk_multiply(const float *a, const float *b, float *output, long first, long end);

/// For each of `rows` rows of `columns` values: adds `bias` (when not NULL), copies the
/// row to `logits` (when not NULL), then applies ReLU when `relu` is nonzero.
void nk_add_bias_relu(float *values, long rows, long columns, const float *bias, float *logits, int relu);

/// The gradient before a ReLU (`relu` nonzero: output_gradient where output > 0, else 0)
/// or a linear activation (a copy), into `result`, which may be `output_gradient`; adds each column's sum of `result`
/// into `column_sums` when not NULL.
void nk_relu_backward(const float *output_gradient, const float *output, float *result, long rows, long columns, int relu,
                      float *column_sums);

/// The arithmetic of nk_gemm: float32 products, or bfloat16 products (inputs rounded to
/// nearest even; subnormal inputs and products count as zero) summed in float32.
typedef enum { NK_PRECISION_FLOAT32 = 0, NK_PRECISION_BFLOAT16 = 1 } nk_precision;

/// Whether this CPU runs nk_gemm in `precision`: AVX-512F, plus AVX512BW, AVX512VL and
/// AVX512_BF16 for bfloat16.
int nk_gemm_supported(nk_precision precision);

/// Single-threaded row-major `c = alpha * op(a) * op(b) + beta * c`, with op(a) of m x k
/// and op(b) of k x n; op transposes when its flag is nonzero. With beta 0, c is only
/// written; with alpha 0 or k 0, a and b are not read, as in BLAS. Needs
/// nk_gemm_supported(precision). Returns 0, or -1 when the packing buffers (about 800 KB
/// per thread, kept until the thread exits) cannot be allocated.
int nk_gemm(nk_precision precision, int transpose_a, int transpose_b, long m, long n, long k, float alpha,
            const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);

/// As nk_gemm with untransposed, contiguous a (m x k) and b (k x n), alpha 1 and beta
/// 0, then adds `bias` (n values, when not NULL) to every row of c and applies ReLU
/// (`x < 0 ? 0 : x`) when `relu` is nonzero, while each tile is still in registers.
int nk_gemm_bias_relu(nk_precision precision, long m, long n, long k, const float *a, const float *b, const float *bias,
                      int relu, float *c);

#endif
