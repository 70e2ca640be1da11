/// A trainable tensor and the gradient of the loss with respect to it.
public final class Parameter {
    /// The parameter's role in its layer, as Keras names it: `kernel` or `bias`.
    public let name: String
    public var value: Tensor<Float>
    /// Written by the layer's `backward`; same shape as `value`.
    public var gradient: Tensor<Float>

    public init(name: String, value: Tensor<Float>) {
        self.name = name
        self.value = value
        self.gradient = Tensor(zeros: value.shape)
    }
}

/// A building block of a `Sequential` model.
///
/// A layer owns its parameters and its scratch buffers. `forward` caches what
/// `backward` needs, so each `backward` call belongs to the latest `forward` with
/// `training: true`. Shapes here exclude the batch axis unless a doc says otherwise.
public protocol Layer: AnyObject {
    /// The layer's name in summaries and errors, e.g. `conv2d_1`; the model assigns one if empty.
    var name: String { get set }

    /// The Keras class name shown in `summary()`, e.g. `Conv2D`.
    var typeName: String { get }

    /// The trainable parameters, empty before `build`.
    var parameters: [Parameter] { get }

    /// Creates the parameters for inputs of `inputShape` (without the batch axis) and
    /// returns the output shape. Raises `NeuralKitError.incompatibleShapes` or
    /// `.invalidArgument` when the layer cannot take that input.
    func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int]

    /// Computes the output for a batch. With `training: true`, dropout is active and the
    /// layer keeps what `backward` needs.
    func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float>

    /// Takes the gradient of the loss with respect to the last training output, writes
    /// the parameter gradients, and returns the gradient with respect to the input, or
    /// nil when `needsInputGradient` is false (the first layer of a model).
    func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>?
}

/// A layer that ends in an `Activation` and can hand its pre-activation output to a
/// loss, so that softmax followed by crossentropy is computed from logits, as Keras does.
public protocol ActivatedLayer: Layer {
    var activation: Activation { get }

    /// The pre-activation output of the last forward pass; kept only when the activation is softmax.
    var lastLogits: Tensor<Float>? { get }

    /// Same as `backward`, but starting from the gradient with respect to the pre-activation output.
    func backward(logitsGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>?
}

/// Glorot (Xavier) uniform initialization, Keras' default for kernels: samples from
/// `U(-limit, limit)` with `limit = sqrt(6 / (fanIn + fanOut))`.
func glorotUniform(shape: [Int], fanIn: Int, fanOut: Int, generator: inout SeededGenerator) -> Tensor<Float> {
    let limit = (6 / Float(fanIn + fanOut)).squareRoot()
    let count = shape.reduce(1, *)
    var values = [Float](repeating: 0, count: count)
    for index in 0..<count {
        values[index] = (generator.nextUnitFloat() * 2 - 1) * limit
    }
    return Tensor(shape: shape, scalars: values)
}

/// Throws unless a parameter tensor of `shape` fits in memory as one array: at most 2^31
/// elements, computed without overflow.
func requireAllocatable(_ shape: [Int], _ parameter: String, of layer: String) throws {
    var count = 1
    for dimension in shape {
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        guard !overflow, product <= Int(Int32.max) else {
            throw NeuralKitError.invalidArgument(
                "\(layer): a \(parameter) of shape \(formatShape(shape)) has more than 2^31 elements; "
                    + "reduce the input size or the number of units")
        }
        count = product
    }
}

/// Throws when a layer that was built for one input shape is built again for another:
/// a layer belongs to one model, or to several with the same input shape, which then
/// share its weights as in Keras.
func requireSameInputShape(_ builtShape: [Int], _ inputShape: [Int], of layer: String) throws {
    guard builtShape == inputShape else {
        throw NeuralKitError.incompatibleShapes(
            "\(layer) was already built for input \(formatShape(builtShape, unknownBatch: true)) and cannot take "
                + "\(formatShape(inputShape, unknownBatch: true)); create a new layer for the second model")
    }
}

/// Checks that a layer argument is positive, naming the layer and argument otherwise.
func requirePositive(_ value: Int, _ argument: String, of layer: String) throws {
    guard value > 0 else {
        throw NeuralKitError.invalidArgument("\(layer): \(argument) must be a positive integer, got \(value)")
    }
}
