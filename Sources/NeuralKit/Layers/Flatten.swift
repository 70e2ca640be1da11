/// Flattens every axis but the batch axis: `(batch, d1, d2, ...)` becomes `(batch, d1 * d2 * ...)`.
public final class Flatten: Layer {
    public var name: String
    public var typeName: String { "Flatten" }
    public var parameters: [Parameter] { [] }
    private var inputShape: [Int] = []

    public init(name: String = "") {
        self.name = name
    }

    public func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] {
        if !self.inputShape.isEmpty {
            try requireSameInputShape(self.inputShape, inputShape, of: "Flatten '\(name)'")
        }
        self.inputShape = inputShape
        return [inputShape.reduce(1, *)]
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        input.reshaped(to: [input.shape[0], input.count / max(input.shape[0], 1)])
    }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        needsInputGradient ? outputGradient.reshaped(to: [outputGradient.shape[0]] + inputShape) : nil
    }
}

/// Declares the shape of one sample (without the batch axis) at the start of a
/// `Sequential` model, as `keras.Input(shape:)` does. Not shown in `summary()`.
public final class Input: Layer {
    public var name: String
    public var typeName: String { "InputLayer" }
    public let shape: [Int]
    public var parameters: [Parameter] { [] }

    public init(shape: [Int], name: String = "") {
        self.shape = shape
        self.name = name
    }

    public func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] {
        guard inputShape == shape else {
            throw NeuralKitError.incompatibleShapes(
                "Input '\(name)' declares shape \(formatShape(shape, unknownBatch: true)), but the data has shape "
                    + "\(formatShape(inputShape, unknownBatch: true))")
        }
        return shape
    }

    public func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> { input }

    public func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? {
        needsInputGradient ? outputGradient : nil
    }
}
