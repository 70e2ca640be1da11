/// A 2-D convolution over NHWC input (channels last, as Keras' default).
///
/// Input `(batch, height, width, channels)` gives output
/// `(batch, outputHeight, outputWidth, filters)`, where per spatial axis
/// `.valid` padding gives `floor((input - kernel) / stride) + 1` and `.same` gives
/// `ceil(input / stride)`. The kernel has shape `(kernelHeight, kernelWidth, channels, filters)`.
///
/// Computed as im2col followed by one matrix product; the im2col buffer is kept and
/// reused from batch to batch.
public final class Conv2D: ActivatedLayer {
    public var name: String
    public var typeName: String { "Conv2D" }
    public let filters: Int
    public let kernelSize: (Int, Int)
    public let strides: (Int, Int)
    public let padding: Padding
    public let activation: Activation
    public let useBias: Bool

    public private(set) var kernel: Parameter?
    public private(set) var bias: Parameter?
    public var parameters: [Parameter] { [kernel, bias].compactMap { $0 } }
    public private(set) var lastLogits: Tensor<Float>?

    private let backend: any Backend
    private var inputShape: [Int] = []
    private var lastGeometry: ConvolutionGeometry?
    private var lastOutput: Tensor<Float>?
    private var columns: [Float] = []
    private var inferenceColumns: [Float] = []
    private var columnsGradient: [Float] = []

    /// - Parameters:
    ///   - filters: the number of output channels; positive.
    ///   - kernelSize: `(height, width)` of the window; positive.
    ///   - strides: `(height, width)` step between windows; positive; default `(1, 1)`.
    ///   - padding: `.valid` (default) or `.same`.
    ///   - activation: applied to the output; default `.linear`.
    ///   - useBias: whether a bias per filter (initialized to zeros) is added; default true.
    public init(
        filters: Int, kernelSize: (Int, Int), strides: (Int, Int) = (1, 1), padding: Padding = .valid,
        activation: Activation = .linear, useBias: Bool = true, name: String = ""
    ) {
        self.filters = filters
        self.kernelSize = kernelSize
        self.strides = strides
        self.padding = padding
        self.activation = activation
        self.useBias = useBias
        self.name = name
        self.backend = defaultBackend
    }

    /// A square kernel: `Conv2D(filters: 32, kernelSize: 3)`.
    public convenience init(
        filters: Int, kernelSize: Int, strides: Int = 1, padding: Padding = .valid,
        activation: Activation = .linear, useBias: Bool = true, name: String = ""
    ) {
        self.init(
            filters: filters, kernelSize: (kernelSize, kernelSize), strides: (strides, strides),
            padding: padding, activation: activation, useBias: useBias, name: name)
    }

    public func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] {
        try requirePositive(filters, "filters", of: "Conv2D")
        try requirePositive(kernelSize.0, "kernelSize height", of: "Conv2D")
        try requirePositive(kernelSize.1, "kernelSize width", of: "Conv2D")
        try requirePositive(strides.0, "strides height", of: "Conv2D")
        try requirePositive(strides.1, "strides width", of: "Conv2D")
        guard inputShape.count == 3 else {
            throw NeuralKitError.incompatibleShapes(
                "Conv2D '\(name)' expects input of shape (batch, height, width, channels), got \(formatShape(inputShape, unknownBatch: true)); "
                    + "for grayscale images of shape (batch, height, width), reshape them to (batch, height, width, 1)")
        }
        let geometry = ConvolutionGeometry(
            batch: 1, inputHeight: inputShape[0], inputWidth: inputShape[1], channels: inputShape[2],
            kernelSize: kernelSize, strides: strides, padding: padding)
        guard geometry.outputHeight > 0, geometry.outputWidth > 0 else {
            throw NeuralKitError.incompatibleShapes(
                "Conv2D '\(name)': a \(kernelSize.0)x\(kernelSize.1) kernel with .valid padding does not fit input "
                    + "\(formatShape(inputShape, unknownBatch: true)); use a smaller kernel or padding: .same")
        }

        let channels = inputShape[2]
        let fanIn = kernelSize.0 * kernelSize.1 * channels
        let fanOut = kernelSize.0 * kernelSize.1 * filters
        kernel = Parameter(
            name: "kernel",
            value: glorotUniform(
                shape: [kernelSize.0, kernelSize.1, channels, filters], fanIn: fanIn, fanOut: fanOut, generator: &generator))
        bias = useBias ? Parameter(name: "bias", value: Tensor(zeros: [filters])) : nil
        self.inputShape = inputShape
        return [geometry.outputHeight, geometry.outputWidth, filters]
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        guard kernel != nil else { preconditionFailure("Conv2D '\(name)' used before build") }
        precondition(
            input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
            "Conv2D '\(name)' was built for input \(formatShape(inputShape, unknownBatch: true)), got \(formatShape(input.shape))")
        let geometry = ConvolutionGeometry(
            batch: input.shape[0], inputHeight: inputShape[0], inputWidth: inputShape[1], channels: inputShape[2],
            kernelSize: kernelSize, strides: strides, padding: padding)
        let rows = geometry.outputPositions
        var output = Tensor<Float>(zeros: [geometry.batch, geometry.outputHeight, geometry.outputWidth, filters])

        // Inference keeps its own im2col buffer so that `backward` still finds the columns
        // of the last training pass after a validation or predict call.
        if training {
            multiplyByKernel(input, geometry: geometry, columns: &columns, into: &output)
        } else {
            multiplyByKernel(input, geometry: geometry, columns: &inferenceColumns, into: &output)
        }

        output.scalars.withUnsafeMutableBufferPointer { y in
            bias?.value.scalars.withUnsafeBufferPointer { b in
                backend.addBiasAndActivate(y.baseAddress!, rows: rows, columns: filters, bias: b.baseAddress!, activation: .linear)
            }
        }
        lastLogits = activation == .softmax ? output : nil
        output.scalars.withUnsafeMutableBufferPointer { y in
            backend.addBiasAndActivate(y.baseAddress!, rows: rows, columns: filters, bias: nil, activation: activation)
        }

        if training {
            lastGeometry = geometry
            lastOutput = output
        }
        return output
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard let lastOutput else { preconditionFailure("Conv2D '\(name)': backward without a training forward pass") }
        var gradient = outputGradient
        let rows = gradient.count / filters
        gradient.scalars.withUnsafeMutableBufferPointer { g in
            lastOutput.scalars.withUnsafeBufferPointer { y in
                backend.activationBackward(
                    g.baseAddress!, output: y.baseAddress!, rows: rows, columns: filters, activation: activation)
            }
        }
        return backward(logitsGradient: gradient, needsInputGradient: needsInputGradient)
    }

    public func backward(logitsGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard let kernel, let geometry = lastGeometry else {
            preconditionFailure("Conv2D '\(name)': backward without a training forward pass")
        }
        let rows = geometry.outputPositions

        // The im2col buffer still holds the columns of the last training forward pass.
        logitsGradient.scalars.withUnsafeBufferPointer { g in
            columns.withUnsafeBufferPointer { cols in
                kernel.gradient.scalars.withUnsafeMutableBufferPointer { dw in
                    backend.matrixMultiply(
                        cols.baseAddress!, transposeA: true, g.baseAddress!, transposeB: false,
                        into: dw.baseAddress!, m: geometry.patchSize, n: filters, k: rows, alpha: 1, beta: 0)
                }
            }
            if let bias {
                bias.gradient.scalars.withUnsafeMutableBufferPointer { db in
                    backend.sumRows(g.baseAddress!, rows: rows, columns: filters, into: db.baseAddress!)
                }
            }
        }
        guard needsInputGradient else { return nil }

        if columnsGradient.count < rows * geometry.patchSize {
            columnsGradient = [Float](repeating: 0, count: rows * geometry.patchSize)
        }
        var inputGradient = Tensor<Float>(zeros: [geometry.batch] + inputShape)
        logitsGradient.scalars.withUnsafeBufferPointer { g in
            kernel.value.scalars.withUnsafeBufferPointer { w in
                columnsGradient.withUnsafeMutableBufferPointer { dcols in
                    backend.matrixMultiply(
                        g.baseAddress!, transposeA: false, w.baseAddress!, transposeB: true,
                        into: dcols.baseAddress!, m: rows, n: geometry.patchSize, k: filters, alpha: 1, beta: 0)
                }
            }
        }
        columnsGradient.withUnsafeBufferPointer { dcols in
            inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                backend.col2im(dcols.baseAddress!, geometry: geometry, into: dx.baseAddress!)
            }
        }
        return inputGradient
    }

    /// Writes im2col of `input` into `columns` (grown if needed), then `output = columns · kernel`.
    private func multiplyByKernel(
        _ input: Tensor<Float>, geometry: ConvolutionGeometry, columns: inout [Float], into output: inout Tensor<Float>
    ) {
        guard let kernel else { return }
        let rows = geometry.outputPositions
        if columns.count < rows * geometry.patchSize {
            columns = [Float](repeating: 0, count: rows * geometry.patchSize)
        }
        input.scalars.withUnsafeBufferPointer { x in
            columns.withUnsafeMutableBufferPointer { cols in
                backend.im2col(x.baseAddress!, geometry: geometry, into: cols.baseAddress!)
            }
        }
        columns.withUnsafeBufferPointer { cols in
            kernel.value.scalars.withUnsafeBufferPointer { w in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    backend.matrixMultiply(
                        cols.baseAddress!, transposeA: false, w.baseAddress!, transposeB: false,
                        into: y.baseAddress!, m: rows, n: filters, k: geometry.patchSize, alpha: 1, beta: 0)
                }
            }
        }
    }
}
