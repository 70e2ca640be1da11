/// The compute kernels that layers call.
///
/// Layers hold no kernel code of their own: a faster CPU path, bfloat16 or another
/// device replaces this protocol's implementation without touching them. Buffers are
/// raw pointers so that layers can reuse their storage from step to step.
public protocol Backend: AnyObject {
    /// The number of threads the kernels may use.
    var threadCount: Int { get }

    /// Computes `c = alpha * op(a) * op(b) + beta * c` for row-major matrices, where
    /// `op(a)` is `m x k`, `op(b)` is `k x n` and `c` is `m x n`.
    func matrixMultiply(
        _ a: UnsafePointer<Float>, transposeA: Bool,
        _ b: UnsafePointer<Float>, transposeB: Bool,
        into c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float, beta: Float)

    /// Computes a convolution over an NHWC batch (channels last), adds `bias` and applies
    /// `activation`. `kernel` has shape `(kernelHeight, kernelWidth, channels, filters)`
    /// and `output` has shape `(batch, outputHeight, outputWidth, filters)`. When
    /// `logits` is given, it receives the output before the activation.
    func convolutionForward(
        _ input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        geometry: ConvolutionGeometry, filters: Int, activation: Activation,
        into output: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>?)

    /// Computes the gradients of a convolution. `outputGradient` is the gradient with
    /// respect to the activation's output, and `output` is the forward result, from which
    /// the activation's derivative is computed. `kernelGradient` and `biasGradient` are
    /// overwritten, and so is `inputGradient` when given.
    func convolutionBackward(
        _ outputGradient: UnsafePointer<Float>, output: UnsafePointer<Float>, activation: Activation,
        input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, geometry: ConvolutionGeometry, filters: Int,
        kernelGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?,
        inputGradient: UnsafeMutablePointer<Float>?)

    /// Max-pools an NHWC batch and records, for each output, the input offset of its maximum.
    func maxPool(
        _ input: UnsafePointer<Float>, geometry: ConvolutionGeometry,
        into output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>)

    /// Applies inverted dropout: `mask` receives `1 / (1 - rate)` for kept elements and 0
    /// for dropped ones, each kept with probability `1 - rate`, and `output = input * mask`.
    /// The mask depends only on `seed` and `count`.
    func dropout(
        _ input: UnsafePointer<Float>, mask: UnsafeMutablePointer<Float>, into output: UnsafeMutablePointer<Float>,
        count: Int, rate: Float, seed: UInt64)

    /// Computes `output[i] = a[i] * b[i]` for `count` elements.
    func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, count: Int)

    /// Routes each output gradient to the input position that held the maximum.
    /// `inputGradient`, of the input's size, is overwritten.
    func maxPoolBackward(
        _ outputGradient: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, geometry: ConvolutionGeometry,
        into inputGradient: UnsafeMutablePointer<Float>)
}

extension Backend {
    /// Computes a dense layer, `output = activation(input · kernel + bias)`, for `rows`
    /// rows of `inputUnits` values: a 1x1 convolution over `rows` one-pixel samples.
    public func denseForward(
        _ input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        rows: Int, inputUnits: Int, units: Int, activation: Activation,
        into output: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>?
    ) {
        convolutionForward(
            input, kernel: kernel, bias: bias, geometry: .pointwise(rows: rows, inputUnits: inputUnits), filters: units,
            activation: activation, into: output, logits: logits)
    }

    /// Computes the gradients of `denseForward`, with the same contract as `convolutionBackward`.
    public func denseBackward(
        _ outputGradient: UnsafePointer<Float>, output: UnsafePointer<Float>, activation: Activation,
        input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, rows: Int, inputUnits: Int, units: Int,
        kernelGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?,
        inputGradient: UnsafeMutablePointer<Float>?
    ) {
        convolutionBackward(
            outputGradient, output: output, activation: activation, input: input, kernel: kernel,
            geometry: .pointwise(rows: rows, inputUnits: inputUnits), filters: units,
            kernelGradient: kernelGradient, biasGradient: biasGradient, inputGradient: inputGradient)
    }
}

/// The shape arithmetic shared by convolution and pooling over NHWC tensors.
public struct ConvolutionGeometry: Equatable, Sendable {
    public var batch: Int
    public var inputHeight: Int
    public var inputWidth: Int
    public var channels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var padTop: Int
    public var padLeft: Int
    public var outputHeight: Int
    public var outputWidth: Int

    /// Computes output size and padding as Keras and TensorFlow do.
    ///
    /// `.valid`: `output = floor((input - kernel) / stride) + 1`.
    /// `.same`: `output = ceil(input / stride)`, with the padding split evenly and the
    /// odd pixel at the bottom and right.
    public init(
        batch: Int, inputHeight: Int, inputWidth: Int, channels: Int,
        kernelSize: (Int, Int), strides: (Int, Int), padding: Padding
    ) {
        self.batch = batch
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.channels = channels
        (kernelHeight, kernelWidth) = kernelSize
        (strideHeight, strideWidth) = strides
        switch padding {
        case .valid:
            outputHeight = inputHeight >= kernelHeight ? (inputHeight - kernelHeight) / strideHeight + 1 : 0
            outputWidth = inputWidth >= kernelWidth ? (inputWidth - kernelWidth) / strideWidth + 1 : 0
            padTop = 0
            padLeft = 0
        case .same:
            outputHeight = (inputHeight + strideHeight - 1) / strideHeight
            outputWidth = (inputWidth + strideWidth - 1) / strideWidth
            padTop = max((outputHeight - 1) * strideHeight + kernelHeight - inputHeight, 0) / 2
            padLeft = max((outputWidth - 1) * strideWidth + kernelWidth - inputWidth, 0) / 2
        }
    }

    /// Values in one im2col row: `kernelHeight * kernelWidth * channels`.
    public var patchSize: Int { kernelHeight * kernelWidth * channels }

    /// Rows of the im2col matrix: `batch * outputHeight * outputWidth`.
    public var outputPositions: Int { batch * outputHeight * outputWidth }

    public var inputCount: Int { batch * inputHeight * inputWidth * channels }

    /// Returns the geometry of a 1x1 convolution over `rows` one-pixel samples: a dense layer.
    public static func pointwise(rows: Int, inputUnits: Int) -> ConvolutionGeometry {
        ConvolutionGeometry(
            batch: rows, inputHeight: 1, inputWidth: 1, channels: inputUnits,
            kernelSize: (1, 1), strides: (1, 1), padding: .valid)
    }

    /// Whether the im2col matrix equals the input itself (a 1x1 kernel, stride 1, no padding).
    var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1 && padTop == 0 && padLeft == 0
    }
}

/// The border treatment of convolution and pooling, as Keras' `padding` argument.
public enum Padding: String, Sendable, CaseIterable {
    /// No padding: only windows that fit inside the input.
    case valid
    /// Zero padding (or ignored positions, for pooling) so that `output = ceil(input / stride)`.
    case same
}

/// The element-wise activations that `Dense` and `Conv2D` apply to their output.
public enum Activation: String, Sendable, CaseIterable {
    case linear
    case relu
    case sigmoid
    case tanh
    /// Softmax over the last axis.
    case softmax
}

/// The backend that new layers use. Replace it before building a model to change
/// every kernel at once.
nonisolated(unsafe) public var defaultBackend: any Backend = CPUBackend()
