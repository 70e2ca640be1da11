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

    private var generator = SeededGenerator(seed: 0)
    private var mask: [Float] = []

    /// - Parameter rate: the fraction of inputs to drop, in [0, 1).
    public init(rate: Float, name: String = "") {
        self.rate = rate
        self.name = name
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
        let scale = 1 / (1 - rate)
        var output = input
        mask.withUnsafeMutableBufferPointer { m in
            output.scalars.withUnsafeMutableBufferPointer { y in
                for index in 0..<y.count {
                    let keep: Float = generator.nextUnitFloat() >= rate ? scale : 0
                    m[index] = keep
                    y[index] *= keep
                }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard needsInputGradient else { return nil }
        guard !mask.isEmpty else { return outputGradient }
        var inputGradient = outputGradient
        mask.withUnsafeBufferPointer { m in
            inputGradient.scalars.withUnsafeMutableBufferPointer { g in
                for index in 0..<g.count { g[index] *= m[index] }
            }
        }
        return inputGradient
    }
}
