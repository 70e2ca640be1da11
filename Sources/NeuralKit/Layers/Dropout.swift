/// Sets a random fraction `rate` of its input to zero during training and scales the
/// rest by `1 / (1 - rate)` (inverted dropout), so inference needs no rescaling.
/// Outside training it passes the input through unchanged.
///
/// The mask comes from a generator seeded from the model's generator at build time.
public final class Dropout: Layer {
    public var name: String
    public var typeName: String { "Dropout" }
    public let rate: Float
    public var parameters: [Parameter] { [] }

    private let backend: any Backend
    private var generator = SeededGenerator(seed: 0)
    private var mask: [Float] = []
    private var output = Tensor<Float>(zeros: [0])
    private var inputGradient = Tensor<Float>(zeros: [0])

    /// The generator that draws the masks, which model files save and restore so that
    /// training resumes with the same masks.
    var maskGenerator: SeededGenerator {
        get { generator }
        set { generator = newValue }
    }

    /// - Parameter rate: the fraction of inputs to drop, in [0, 1).
    public init(rate: Float, name: String = "") {
        self.rate = rate
        self.name = name
        self.backend = defaultBackend
    }

    public func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] {
        guard rate >= 0, rate < 1 else {
            throw NeuralKitError.invalidArgument("Dropout: rate must be in [0, 1), got \(rate)")
        }
        self.generator = generator.split()
        return inputShape
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        guard training, rate > 0 else {
            mask = []
            return input
        }
        if mask.count != input.count {
            mask = [Float](repeating: 0, count: input.count)
        }
        output.resize(to: input.shape, filler: 0)

        let seed = generator.next()
        input.scalars.withUnsafeBufferPointer { x in
            mask.withUnsafeMutableBufferPointer { m in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    backend.dropout(x.baseAddress!, mask: m.baseAddress!, into: y.baseAddress!, count: m.count, rate: rate, seed: seed)
                }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard needsInputGradient else { return nil }
        guard !mask.isEmpty else { return outputGradient }
        checkPrecondition(outputGradient.count == mask.count, "Dropout '\(name)': gradient shape \(formatShape(outputGradient.shape)) differs from the last training input")
        inputGradient.resize(to: outputGradient.shape, filler: 0)
        outputGradient.scalars.withUnsafeBufferPointer { g in
            mask.withUnsafeBufferPointer { m in
                inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                    backend.multiply(g.baseAddress!, m.baseAddress!, into: dx.baseAddress!, count: dx.count)
                }
            }
        }
        return inputGradient
    }
}
