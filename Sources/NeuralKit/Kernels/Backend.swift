/// The compute kernels that layers, losses and optimizers call.
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

    /// Copies every receptive field of an NHWC batch into one row of `columns`, so that
    /// a convolution becomes one matrix product. `columns` has
    /// `batch * outputHeight * outputWidth` rows of `kernelHeight * kernelWidth * channels`
    /// values; padded positions are zero.
    func im2col(_ input: UnsafePointer<Float>, geometry: ConvolutionGeometry, into columns: UnsafeMutablePointer<Float>)

    /// Adds each row of `columns` back onto the input positions it was copied from:
    /// the adjoint of `im2col`. `inputGradient` is overwritten.
    func col2im(_ columns: UnsafePointer<Float>, geometry: ConvolutionGeometry, into inputGradient: UnsafeMutablePointer<Float>)

    /// Max-pools an NHWC batch and records, for each output, the input offset of its maximum.
    func maxPool(
        _ input: UnsafePointer<Float>, geometry: ConvolutionGeometry,
        into output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>)

    /// Routes each output gradient to the input position that held the maximum.
    /// `inputGradient` (of the input's size) is overwritten.
    func maxPoolBackward(
        _ outputGradient: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, outputCount: Int,
        into inputGradient: UnsafeMutablePointer<Float>, inputCount: Int)

    /// Adds `bias` (length `columns`) to each of the `rows` rows of `matrix`, then applies `activation`.
    func addBiasAndActivate(
        _ matrix: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
        bias: UnsafePointer<Float>?, activation: Activation)

    /// Turns the gradient with respect to an activation's output into the gradient with
    /// respect to its input, in place, given the activation's output.
    func activationBackward(
        _ gradient: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>,
        rows: Int, columns: Int, activation: Activation)

    /// Sums the `rows` rows of `matrix` into `result` (length `columns`), overwriting it.
    func sumRows(_ matrix: UnsafePointer<Float>, rows: Int, columns: Int, into result: UnsafeMutablePointer<Float>)
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
}

/// How convolution and pooling treat the border, as Keras' `padding` argument.
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
