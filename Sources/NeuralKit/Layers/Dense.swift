/// A fully connected layer: `output = activation(input · kernel + bias)`.
///
/// Acts on the last axis, as Keras' Dense does: input `(batch, ..., inputUnits)` gives
/// output `(batch, ..., units)`. The kernel has shape `(inputUnits, units)`.
public final class Dense: ActivatedLayer {
    public var name: String
    public var typeName: String { "Dense" }
    public let units: Int
    public let activation: Activation
    public let useBias: Bool

    public private(set) var kernel: Parameter?
    public private(set) var bias: Parameter?
    public var parameters: [Parameter] { [kernel, bias].compactMap { $0 } }
    public var lastLogits: Tensor<Float>? { activation == .softmax ? logits : nil }

    private let backend: any Backend
    private var buffers = LayerBuffers()
    private var logits = Tensor<Float>(zeros: [0])

    /// - Parameters:
    ///   - units: the size of the output's last axis; positive.
    ///   - activation: applied to the output; default `.linear`.
    ///   - useBias: whether a bias vector (initialized to zeros) is added; default true.
    public init(units: Int, activation: Activation = .linear, useBias: Bool = true, name: String = "") {
        self.units = units
        self.activation = activation
        self.useBias = useBias
        self.name = name
        self.backend = defaultBackend
    }

    public func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] {
        try requirePositive(units, "units", of: "Dense")
        guard let inputUnits = inputShape.last, inputUnits > 0 else {
            throw NeuralKitError.incompatibleShapes(
                "Dense '\(name)' needs an input with a positive last axis, got shape \(formatShape(inputShape, unknownBatch: true))")
        }
        if let kernel {
            try requireSameInputShape([kernel.value.shape[0]], [inputUnits], of: "Dense '\(name)'")
            return Array(inputShape.dropLast()) + [units]
        }
        try requireAllocatable([inputUnits, units], "kernel", of: "Dense '\(name)'")
        kernel = Parameter(
            name: "kernel",
            value: glorotUniform(shape: [inputUnits, units], fanIn: inputUnits, fanOut: units, generator: &generator))
        bias = useBias ? Parameter(name: "bias", value: Tensor(zeros: [units])) : nil
        return Array(inputShape.dropLast()) + [units]
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        guard let kernel else { fatalError("Dense '\(name)' used before build") }
        let inputUnits = kernel.value.shape[0]
        checkPrecondition(
            input.shape.last == inputUnits,
            "Dense '\(name)' was built for \(inputUnits) input units, got input of shape \(formatShape(input.shape))")
        let rows = input.count / inputUnits
        let outputShape = Array(input.shape.dropLast()) + [units]
        if activation == .softmax { logits.resize(to: outputShape, filler: 0) }

        return buffers.forward(input: input, outputShape: outputShape, training: training) { x, y in
            kernel.value.scalars.withUnsafeBufferPointer { w in
                withOptionalPointer(bias?.value.scalars) { b in
                    withOptionalMutablePointer(&logits.scalars, if: activation == .softmax) { z in
                        backend.denseForward(
                            x, kernel: w.baseAddress!, bias: b, rows: rows, inputUnits: inputUnits, units: units,
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
        guard let kernel else { fatalError("Dense '\(name)' used before build") }
        let inputUnits = kernel.value.shape[0]
        return buffers.backward(outputGradient, needsInputGradient: needsInputGradient, layer: name) { input, output, dy, dx in
            kernel.value.scalars.withUnsafeBufferPointer { w in
                kernel.gradient.scalars.withUnsafeMutableBufferPointer { dw in
                    withMutableGradient(bias) { db in
                        input.scalars.withUnsafeBufferPointer { x in
                            backend.denseBackward(
                                dy, output: output, activation: activation, input: x.baseAddress!, kernel: w.baseAddress!,
                                rows: input.count / inputUnits, inputUnits: inputUnits, units: units,
                                kernelGradient: dw.baseAddress!, biasGradient: db, inputGradient: dx)
                        }
                    }
                }
            }
        }
    }
}
