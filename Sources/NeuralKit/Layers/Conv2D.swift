/// A 2-D convolution over NHWC input (channels last, as Keras' default).
///
/// Input `(batch, height, width, channels)` gives output
/// `(batch, outputHeight, outputWidth, filters)`, where per spatial axis
/// `.valid` padding gives `floor((input - kernel) / stride) + 1` and `.same` gives
/// `ceil(input / stride)`. The kernel has shape `(kernelHeight, kernelWidth, channels, filters)`.
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
    public var lastLogits: Tensor<Float>? { activation == .softmax ? logits : nil }

    private let backend: any Backend
    private var inputShape: [Int] = []
    private var buffers = LayerBuffers()
    private var logits = Tensor<Float>(zeros: [0])

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

    /// Creates a layer with a square kernel: `Conv2D(filters: 32, kernelSize: 3)`.
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
        let geometry = makeGeometry(batch: 1, inputShape: inputShape)
        guard geometry.outputHeight > 0, geometry.outputWidth > 0 else {
            throw NeuralKitError.incompatibleShapes(
                "Conv2D '\(name)': a \(kernelSize.0)x\(kernelSize.1) kernel with .valid padding does not fit input "
                    + "\(formatShape(inputShape, unknownBatch: true)); use a smaller kernel or padding: .same")
        }

        if kernel != nil {
            try requireSameInputShape(self.inputShape, inputShape, of: "Conv2D '\(name)'")
            return [geometry.outputHeight, geometry.outputWidth, filters]
        }
        let channels = inputShape[2]
        try requireAllocatable([kernelSize.0, kernelSize.1, channels, filters], "kernel", of: "Conv2D '\(name)'")
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
        guard let kernel else { fatalError("Conv2D '\(name)' used before build") }
        checkPrecondition(
            input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
            "Conv2D '\(name)' was built for input \(formatShape(inputShape, unknownBatch: true)), got \(formatShape(input.shape))")
        let geometry = makeGeometry(batch: input.shape[0], inputShape: inputShape)
        let outputShape = [geometry.batch, geometry.outputHeight, geometry.outputWidth, filters]
        if activation == .softmax { logits.resize(to: outputShape, filler: 0) }

        return buffers.forward(input: input, outputShape: outputShape, training: training) { x, y in
            kernel.value.scalars.withUnsafeBufferPointer { w in
                withOptionalPointer(bias?.value.scalars) { b in
                    withOptionalMutablePointer(&logits.scalars, if: activation == .softmax) { z in
                        backend.convolutionForward(
                            x, kernel: w.baseAddress!, bias: b, geometry: geometry, filters: filters,
                            activation: activation, into: y, logits: z)
                    }
                }
            }
        }
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        backward(outputGradient, through: activation, needsInputGradient: needsInputGradient)
    }

    public func backward(logitsGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        backward(logitsGradient, through: .linear, needsInputGradient: needsInputGradient)
    }

    private func backward(_ outputGradient: Tensor<Float>, through activation: Activation, needsInputGradient: Bool) -> Tensor<Float>? {
        guard let kernel else { fatalError("Conv2D '\(name)' used before build") }
        return buffers.backward(outputGradient, needsInputGradient: needsInputGradient, layer: name) { input, output, dy, dx in
            let geometry = makeGeometry(batch: input.shape[0], inputShape: inputShape)
            kernel.value.scalars.withUnsafeBufferPointer { w in
                kernel.gradient.scalars.withUnsafeMutableBufferPointer { dw in
                    withMutableGradient(bias) { db in
                        input.scalars.withUnsafeBufferPointer { x in
                            backend.convolutionBackward(
                                dy, output: output, activation: activation, input: x.baseAddress!, kernel: w.baseAddress!,
                                geometry: geometry, filters: filters, kernelGradient: dw.baseAddress!, biasGradient: db,
                                inputGradient: dx)
                        }
                    }
                }
            }
        }
    }

    private func makeGeometry(batch: Int, inputShape: [Int]) -> ConvolutionGeometry {
        ConvolutionGeometry(
            batch: batch, inputHeight: inputShape[0], inputWidth: inputShape[1], channels: inputShape[2],
            kernelSize: kernelSize, strides: strides, padding: padding)
    }
}
