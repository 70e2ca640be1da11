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
    public private(set) var lastLogits: Tensor<Float>?

    private let backend: any Backend
    private var lastInput: Tensor<Float>?
    private var lastOutput: Tensor<Float>?

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
        kernel = Parameter(
            name: "kernel",
            value: glorotUniform(shape: [inputUnits, units], fanIn: inputUnits, fanOut: units, generator: &generator))
        bias = useBias ? Parameter(name: "bias", value: Tensor(zeros: [units])) : nil
        return Array(inputShape.dropLast()) + [units]
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        guard let kernel else { preconditionFailure("Dense '\(name)' used before build") }
        let inputUnits = kernel.value.shape[0]
        let rows = input.count / inputUnits
        var output = Tensor<Float>(zeros: Array(input.shape.dropLast()) + [units])

        input.scalars.withUnsafeBufferPointer { x in
            kernel.value.scalars.withUnsafeBufferPointer { w in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    backend.matrixMultiply(
                        x.baseAddress!, transposeA: false, w.baseAddress!, transposeB: false,
                        into: y.baseAddress!, m: rows, n: units, k: inputUnits, alpha: 1, beta: 0)
                }
            }
        }
        output.scalars.withUnsafeMutableBufferPointer { y in
            bias?.value.scalars.withUnsafeBufferPointer { b in
                backend.addBiasAndActivate(y.baseAddress!, rows: rows, columns: units, bias: b.baseAddress!, activation: .linear)
            }
        }
        if activation == .softmax { lastLogits = output } else { lastLogits = nil }
        output.scalars.withUnsafeMutableBufferPointer { y in
            backend.addBiasAndActivate(y.baseAddress!, rows: rows, columns: units, bias: nil, activation: activation)
        }

        if training {
            lastInput = input
            lastOutput = output
        }
        return output
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard let lastOutput else { preconditionFailure("Dense '\(name)': backward without a training forward pass") }
        var gradient = outputGradient
        let rows = gradient.count / units
        gradient.scalars.withUnsafeMutableBufferPointer { g in
            lastOutput.scalars.withUnsafeBufferPointer { y in
                backend.activationBackward(g.baseAddress!, output: y.baseAddress!, rows: rows, columns: units, activation: activation)
            }
        }
        return backward(logitsGradient: gradient, needsInputGradient: needsInputGradient)
    }

    public func backward(logitsGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard let kernel, let lastInput else { preconditionFailure("Dense '\(name)': backward without a training forward pass") }
        let inputUnits = kernel.value.shape[0]
        let rows = logitsGradient.count / units

        logitsGradient.scalars.withUnsafeBufferPointer { g in
            lastInput.scalars.withUnsafeBufferPointer { x in
                kernel.gradient.scalars.withUnsafeMutableBufferPointer { dw in
                    backend.matrixMultiply(
                        x.baseAddress!, transposeA: true, g.baseAddress!, transposeB: false,
                        into: dw.baseAddress!, m: inputUnits, n: units, k: rows, alpha: 1, beta: 0)
                }
            }
            if let bias {
                bias.gradient.scalars.withUnsafeMutableBufferPointer { db in
                    backend.sumRows(g.baseAddress!, rows: rows, columns: units, into: db.baseAddress!)
                }
            }
        }
        guard needsInputGradient else { return nil }

        var inputGradient = Tensor<Float>(zeros: lastInput.shape)
        logitsGradient.scalars.withUnsafeBufferPointer { g in
            kernel.value.scalars.withUnsafeBufferPointer { w in
                inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                    backend.matrixMultiply(
                        g.baseAddress!, transposeA: false, w.baseAddress!, transposeB: true,
                        into: dx.baseAddress!, m: rows, n: inputUnits, k: units, alpha: 1, beta: 0)
                }
            }
        }
        return inputGradient
    }
}
