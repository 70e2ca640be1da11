/// Multiplies its input by `scale` and adds `offset`, as Keras' `Rescaling`: with
/// `scale: 1 / 255` it turns pixel values in [0, 255] into [0, 1] inside the model, so
/// the data can stay in bytes (`Tensor<UInt8>`), a quarter of the memory of floats.
public final class Rescaling: Layer {
    public var name: String
    public var typeName: String { "Rescaling" }
    public let scale: Float
    public let offset: Float
    public var parameters: [Parameter] { [] }

    private var output = Tensor<Float>(zeros: [0])
    private var inputGradient = Tensor<Float>(zeros: [0])

    /// - Parameters:
    ///   - scale: the factor applied to every input; finite.
    ///   - offset: added after scaling; finite; default 0.
    public init(scale: Float, offset: Float = 0, name: String = "") {
        self.scale = scale
        self.offset = offset
        self.name = name
    }

    public func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] {
        guard scale.isFinite, offset.isFinite else {
            throw NeuralKitError.invalidArgument("Rescaling: scale and offset must be finite, got scale \(scale) and offset \(offset)")
        }
        return inputShape
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        output.resize(to: input.shape, filler: 0)
        let (scale, offset) = (self.scale, self.offset)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                for index in 0..<y.count { y[index] = x[index] * scale + offset }
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        guard needsInputGradient else { return nil }
        inputGradient.resize(to: outputGradient.shape, filler: 0)
        let scale = self.scale
        outputGradient.scalars.withUnsafeBufferPointer { g in
            inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                for index in 0..<dx.count { dx[index] = g[index] * scale }
            }
        }
        return inputGradient
    }
}
