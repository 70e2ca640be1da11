#ifndef NK_KERNELS_H
#define NK_KERNELS_H

#include <stdint.h>

/// Sizes of a convolution or pooling window over an NHWC batch (channels last).
typedef struct {
    long batch, input_height, input_width, channels;
    long kernel_height, kernel_width, stride_height, stride_width;
    long pad_top, pad_left, output_height, output_width;
} nk_geometry;

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
/// depend on how blocks are split over threads.
void nk_dropout(const float *input, float *mask, float *output, long first_block, long end_block, long count, float rate,
                float scale, uint64_t seed);

/// Computes `output[i] = a[i] * b[i]` for i in [first, end).
void nk_multiply(const float *a, const float *b, float *output, long first, long end);

#endif
