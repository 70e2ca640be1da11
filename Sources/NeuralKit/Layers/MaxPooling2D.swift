/// Max pooling over NHWC input: the maximum of each window, per channel.
///
/// Input `(batch, height, width, channels)` gives `(batch, outputHeight, outputWidth, channels)`
/// with the same size formula as `Conv2D`. `strides` defaults to `poolSize`, as in Keras,
/// so `MaxPooling2D(poolSize: 2)` halves 26x26 to 13x13 and 11x11 to 5x5.
public final class MaxPooling2D: Layer {
    public var name: String
    public var typeName: String { "MaxPooling2D" }
    public let poolSize: (Int, Int)
    public let strides: (Int, Int)
    public let padding: Padding
    public var parameters: [Parameter] { [] }

    private let backend: any Backend
    private var inputShape: [Int] = []
    private var argmax: [Int32] = []
    private var inferenceArgmax: [Int32] = []
    private var trainingOutput = Tensor<Float>(zeros: [0])
    private var inferenceOutput = Tensor<Float>(zeros: [0])
    private var inputGradient = Tensor<Float>(zeros: [0])
    private var trainingGeometry: ConvolutionGeometry?

    /// - Parameters:
    ///   - poolSize: `(height, width)` of the window; positive; default `(2, 2)`.
    ///   - strides: step between windows; default nil, which means `poolSize`.
    ///   - padding: `.valid` (default) or `.same`; padded positions never win the maximum.
    public init(poolSize: (Int, Int) = (2, 2), strides: (Int, Int)? = nil, padding: Padding = .valid, name: String = "") {
        self.poolSize = poolSize
        self.strides = strides ?? poolSize
        self.padding = padding
        self.name = name
        self.backend = defaultBackend
    }

    /// Creates a layer with a square window: `MaxPooling2D(poolSize: 2)`.
    public convenience init(poolSize: Int, strides: Int? = nil, padding: Padding = .valid, name: String = "") {
        self.init(poolSize: (poolSize, poolSize), strides: strides.map { ($0, $0) }, padding: padding, name: name)
    }

    public func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] {
        try requirePositive(poolSize.0, "poolSize height", of: "MaxPooling2D")
        try requirePositive(poolSize.1, "poolSize width", of: "MaxPooling2D")
        try requirePositive(strides.0, "strides height", of: "MaxPooling2D")
        try requirePositive(strides.1, "strides width", of: "MaxPooling2D")
        guard inputShape.count == 3 else {
            throw NeuralKitError.incompatibleShapes(
                "MaxPooling2D '\(name)' expects input of shape (batch, height, width, channels), got \(formatShape(inputShape, unknownBatch: true))")
        }
        let geometry = makeGeometry(batch: 1, inputShape: inputShape)
        guard geometry.outputHeight > 0, geometry.outputWidth > 0 else {
            throw NeuralKitError.incompatibleShapes(
                "MaxPooling2D '\(name)': a \(poolSize.0)x\(poolSize.1) window with .valid padding does not fit input "
                    + "\(formatShape(inputShape, unknownBatch: true)); use a smaller poolSize or padding: .same")
        }
        if !self.inputShape.isEmpty {
            try requireSameInputShape(self.inputShape, inputShape, of: "MaxPooling2D '\(name)'")
        }
        self.inputShape = inputShape
        return [geometry.outputHeight, geometry.outputWidth, inputShape[2]]
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        checkPrecondition(
            input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
            "MaxPooling2D '\(name)' was built for input \(formatShape(inputShape, unknownBatch: true)), got \(formatShape(input.shape))")
        let geometry = makeGeometry(batch: input.shape[0], inputShape: inputShape)
        let outputShape = [geometry.batch, geometry.outputHeight, geometry.outputWidth, geometry.channels]
        // Inference reuses the training buffers unless a training pass awaits its backward pass.
        if training || trainingGeometry == nil {
            trainingGeometry = training ? geometry : nil
            pool(input, geometry: geometry, shape: outputShape, into: &trainingOutput, argmax: &argmax)
            return trainingOutput
        }
        pool(input, geometry: geometry, shape: outputShape, into: &inferenceOutput, argmax: &inferenceArgmax)
        return inferenceOutput
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard needsInputGradient else { return nil }
        guard let geometry = trainingGeometry, outputGradient.shape == trainingOutput.shape else {
            fatalError("MaxPooling2D '\(name)': backward needs a preceding forward pass with training: true and a gradient of its output shape")
        }
        trainingGeometry = nil
        inputGradient.resize(to: [geometry.batch] + inputShape, filler: 0)
        outputGradient.scalars.withUnsafeBufferPointer { g in
            argmax.withUnsafeBufferPointer { index in
                inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                    backend.maxPoolBackward(g.baseAddress!, argmax: index.baseAddress!, geometry: geometry, into: dx.baseAddress!)
                }
            }
        }
        return inputGradient
    }

    private func pool(
        _ input: Tensor<Float>, geometry: ConvolutionGeometry, shape: [Int], into output: inout Tensor<Float>, argmax: inout [Int32]
    ) {
        output.resize(to: shape, filler: 0)
        if argmax.count != output.count {
            argmax = [Int32](repeating: 0, count: output.count)
        }
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                argmax.withUnsafeMutableBufferPointer { index in
                    backend.maxPool(x.baseAddress!, geometry: geometry, into: y.baseAddress!, argmax: index.baseAddress!)
                }
            }
        }
    }

    private func makeGeometry(batch: Int, inputShape: [Int]) -> ConvolutionGeometry {
        ConvolutionGeometry(
            batch: batch, inputHeight: inputShape[0], inputWidth: inputShape[1], channels: inputShape[2],
            kernelSize: poolSize, strides: strides, padding: padding)
    }
}
