import Foundation

/// A linear stack of layers, as Keras' `Sequential`: build, `compile`, `fit`,
/// `evaluate`, `predict`.
///
/// ```swift
/// let model = Sequential([
///     Input(shape: [28, 28, 1]),
///     Conv2D(filters: 32, kernelSize: 3, activation: .relu),
///     MaxPooling2D(poolSize: 2),
///     Flatten(),
///     Dense(units: 10, activation: .softmax),
/// ], seed: 42)
/// try model.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(), metrics: ["accuracy"])
/// let history = try model.fit(x: images, y: labels, batchSize: 250, epochs: 25, validationSplit: 0.2)
/// ```
///
/// All randomness (initial weights, dropout masks, shuffling) comes from one
/// generator seeded by `seed`, so the same seed and thread count give the same numbers.
public final class Sequential {
    public var name: String
    public private(set) var layers: [any Layer]
    /// The shape of one input sample, without the batch axis; nil before the model is built.
    public private(set) var inputShape: [Int]?
    /// The shape of one output sample; nil before the model is built.
    public private(set) var outputShape: [Int]?
    /// The output shape of each layer, without the batch axis; empty before the model is built.
    public private(set) var layerOutputShapes: [[Int]] = []

    public private(set) var loss: (any Loss)?
    public private(set) var optimizer: (any Optimizer)?
    public private(set) var metrics: [any Metric] = []

    /// Set to true, usually by a callback, to end `fit` after the current batch, as
    /// Keras' `stop_training`. That epoch still validates and calls `epochEnd`. `fit`
    /// sets it to false when it starts.
    public var stopTraining = false

    var generator: SeededGenerator

    /// The point inside an epoch where the last `fit` stopped, or nil after a whole
    /// epoch. A model saved there and loaded continues that epoch at its next batch.
    var epochPosition: EpochPosition?

    /// The epoch that training stopped inside, with the batches it completed, or nil
    /// when the last `fit` (or the saved model's) ended with a whole epoch.
    public var unfinishedEpoch: TrainingInterruption.StopPoint? {
        epochPosition.map {
            TrainingInterruption.StopPoint(
                epoch: $0.epoch, completedBatches: $0.completedBatches, batchesPerEpoch: $0.batchesPerEpoch)
        }
    }

    /// Returns `unfinishedEpoch` when `fit` would continue it at its next batch: for
    /// `trainingSamples` samples (after the validation split), `batchSize` and
    /// `shuffle` as in the stopped run, and `initialEpoch` equal to its epoch.
    /// Otherwise nil, and `fit` starts its first epoch from the first batch.
    public func continuableEpoch(trainingSamples: Int, batchSize: Int, shuffle: Bool = true) -> TrainingInterruption.StopPoint? {
        guard let position = epochPosition, position.trainingSamples == trainingSamples,
            position.batchSize == min(batchSize, trainingSamples), (position.shuffleGenerator != nil) == shuffle
        else { return nil }
        return unfinishedEpoch
    }

    /// - Parameters:
    ///   - layers: the layers in order; an `Input` first builds the model at once.
    ///   - seed: seeds the model's generator; default 0.
    public init(_ layers: [any Layer] = [], seed: UInt64 = 0, name: String = "sequential") {
        self.layers = []
        self.name = name
        self.generator = SeededGenerator(seed: seed)
        for layer in layers {
            self.layers.append(layer)
            assignName(to: layer)
        }
    }

    /// Appends a layer. Raises `NeuralKitError.notReady` once the model is built, since
    /// the new layer would have no weights.
    public func add(_ layer: any Layer) throws {
        guard inputShape == nil || (layers.count == 1 && layers[0] is Input) else {
            throw NeuralKitError.notReady(
                "cannot add layer '\(layer.typeName)' to model '\(name)' after it was built; add all layers before fit or build")
        }
        if layer is Input && !layers.isEmpty {
            throw NeuralKitError.invalidArgument("Input must be the first layer of model '\(name)'")
        }
        layers.append(layer)
        assignName(to: layer)
    }

    /// Creates every layer's weights for samples of `inputShape` (without the batch axis).
    public func build(inputShape: [Int]) throws {
        guard inputShape.allSatisfy({ $0 > 0 }) else {
            throw NeuralKitError.invalidArgument(
                "model '\(name)': input shape \(formatShape(inputShape, unknownBatch: true)) must have positive dimensions")
        }
        if let index = layers.dropFirst().firstIndex(where: { $0 is Input }) {
            throw NeuralKitError.invalidArgument(
                "model '\(name)': Input must be the first layer, but layer \(index) is an Input; remove it or move it to the front")
        }
        guard layers.contains(where: { !($0 is Input) }) else {
            throw NeuralKitError.notReady("model '\(name)' has no layers; add layers before building it")
        }
        var shape = inputShape
        var shapes: [[Int]] = []
        for layer in layers {
            shape = try layer.build(inputShape: shape, generator: &generator)
            shapes.append(shape)
        }
        self.inputShape = inputShape
        self.outputShape = shape
        self.layerOutputShapes = shapes
    }

    /// Builds the model from its `Input` layer, if it starts with one and is not built yet.
    func buildFromInputLayer() throws {
        if inputShape == nil, let input = layers.first as? Input {
            try build(inputShape: input.shape)
            try resolveMetrics()
        }
    }

    /// All trainable parameters, in layer order.
    public var parameters: [Parameter] { layers.flatMap(\.parameters) }

    /// The number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Sets the loss, optimizer and metrics for training and evaluation.
    ///
    /// - Parameter metrics: Keras' metric names; `"accuracy"` picks the accuracy that
    ///   matches the loss (sparse for `SparseCategoricalCrossentropy`, categorical for
    ///   `CategoricalCrossentropy`, binary for one output unit).
    public func compile(loss: any Loss, optimizer: any Optimizer, metrics: [String] = []) throws {
        try configure(loss: loss, optimizer: optimizer, metricNames: metrics, metricObjects: [])
    }

    /// Sets the loss and optimizer, with metric objects such as `SparseTopKCategoricalAccuracy(k: 3)`.
    public func compile(loss: any Loss, optimizer: any Optimizer, metrics: [any Metric]) throws {
        try configure(loss: loss, optimizer: optimizer, metricNames: [], metricObjects: metrics)
    }

    private func configure(loss: any Loss, optimizer: any Optimizer, metricNames: [String], metricObjects: [any Metric]) throws {
        try optimizer.validate()
        guard loss.reduction != .none else {
            throw NeuralKitError.invalidArgument(
                "\(loss.name) with reduction .none returns one value per sample and cannot drive training; "
                    + "use .sumOverBatchSize (the default) or .sum")
        }
        let names = Set(metricNames + metricObjects.map(\.name))
        guard names.count == metricNames.count + metricObjects.count, !names.contains("loss") else {
            throw NeuralKitError.invalidArgument(
                "metric names must be unique and differ from 'loss', got \(metricNames + metricObjects.map(\.name))")
        }
        self.loss = loss
        self.optimizer = optimizer
        self.metricNames = metricNames
        self.metricObjects = metricObjects
        self.metrics = metricObjects
        try buildFromInputLayer()
        if outputShape != nil { try resolveMetrics() }
        warnAboutSoftmaxMisuse()
    }

    /// The warnings the last `compile` printed to standard error, such as softmax
    /// followed by a loss with `fromLogits: true`.
    public private(set) var warnings: [String] = []

    private func warn(_ message: String) {
        warnings.append(message)
        printWarning(message)
    }

    var metricNames: [String] = []
    var metricObjects: [any Metric] = []

    /// Turns metric names into metric objects once the output size is known.
    func resolveMetrics() throws {
        guard let loss, let outputShape else { return }
        let units = outputShape.last ?? 1
        metrics = try metricNames.map { try resolveMetric($0, loss: loss, outputUnits: units) } + metricObjects
    }

    /// Computes the outputs for `x` in batches, without dropout.
    public func predict(_ x: some ModelInput, batchSize: Int = 32) throws -> Tensor<Float> {
        try requirePositiveBatchSize(batchSize)
        try prepare(for: x)
        guard let outputShape else { fatalError("model built by prepare") }
        let count = x.shape[0]
        let batchSize = min(batchSize, max(count, 1))
        var outputs = [Float]()
        outputs.reserveCapacity(count * outputShape.reduce(1, *))
        for start in stride(from: 0, to: count, by: batchSize) {
            let batch = x.floatRows(start..<min(start + batchSize, count))
            outputs.append(contentsOf: forward(batch, training: false).scalars)
        }
        return Tensor(shape: [count] + outputShape, scalars: outputs)
    }

    /// Runs the layers in order.
    func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> {
        var activation = input
        for layer in layers { activation = layer.forward(activation, training: training) }
        return activation
    }

    /// The last layer when it ends in softmax and the loss takes its logits instead.
    var softmaxLogitsLayer: (any ActivatedLayer)? {
        guard let loss, loss.computesFromSoftmaxLogits, !loss.fromLogits,
            let last = layers.last as? any ActivatedLayer, last.activation == .softmax
        else { return nil }
        return last
    }

    /// Builds the model from `x` if needed and checks that `x` fits it.
    func prepare(for x: some ModelInput) throws {
        guard x.shape.count >= 2 else {
            throw NeuralKitError.incompatibleShapes(
                "model '\(name)': x must have a batch axis and at least one feature axis, got shape \(formatShape(x.shape))")
        }
        let sampleShape = Array(x.shape.dropFirst())
        if let input = layers.first as? Input, input.shape == sampleShape {
            try buildFromInputLayer()
        }
        if inputShape == nil {
            if let input = layers.first as? Input, input.shape != sampleShape {
                throw NeuralKitError.incompatibleShapes(
                    "model '\(name)' expects samples of shape \(formatShape(input.shape, unknownBatch: true)), but x has shape "
                        + "\(formatShape(x.shape))")
            }
            try build(inputShape: sampleShape)
            try resolveMetrics()
        } else if sampleShape != inputShape {
            throw NeuralKitError.incompatibleShapes(
                "model '\(name)' was built for samples of shape \(formatShape(inputShape!, unknownBatch: true)), but x has shape "
                    + "\(formatShape(x.shape))")
        }
        if let (index, value) = x.firstNonFiniteValue() {
            throw NeuralKitError.nonFiniteValue(
                "model '\(name)': x contains \(value) at \(formatIndex(index, shape: x.shape)); "
                    + "replace NaN and infinite inputs before training or predicting")
        }
    }

    /// Gives a layer without a name Keras' default: the snake-case type name, then `_1`, `_2`, ...
    private func assignName(to layer: any Layer) {
        guard layer.name.isEmpty else { return }
        let base = snakeCase(layer.typeName)
        let existing = Set(layers.map(\.name))
        var candidate = base
        var suffix = 1
        while existing.contains(candidate) {
            candidate = "\(base)_\(suffix)"
            suffix += 1
        }
        layer.name = candidate
    }

    /// Prints warnings for softmax set-ups that train badly, and keeps them in `warnings`.
    private func warnAboutSoftmaxMisuse() {
        warnings = []
        guard let last = layers.last as? any ActivatedLayer, last.activation == .softmax else { return }
        if let loss, loss.fromLogits {
            warn(
                "\(loss.name) has fromLogits: true, but layer '\(last.name)' already applies softmax, so the loss sees "
                    + "probabilities as logits; remove the activation or pass fromLogits: false")
        }
        if let units = (last as? Dense)?.units ?? (last as? Conv2D)?.filters, units == 1 {
            warn(
                "layer '\(last.name)' applies softmax to 1 unit, which always outputs 1; use sigmoid for a binary output")
        }
    }
}

/// Raises `NeuralKitError.invalidArgument` unless `batchSize` is positive.
func requirePositiveBatchSize(_ batchSize: Int) throws {
    guard batchSize > 0 else {
        throw NeuralKitError.invalidArgument("batchSize must be a positive integer, got \(batchSize)")
    }
}

/// Writes a warning line to standard error.
func printWarning(_ message: String) {
    FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
}

/// `MaxPooling2D` becomes `max_pooling2d`, `Conv2D` becomes `conv2d`, as Keras names layers.
func snakeCase(_ typeName: String) -> String {
    var result = ""
    let characters = Array(typeName)
    for (index, character) in characters.enumerated() {
        if character.isUppercase && index > 0 && characters[index - 1].isLowercase {
            result.append("_")
        }
        result.append(contentsOf: character.lowercased())
    }
    return result
}

/// A point inside an epoch of `fit`: the batches done and how that epoch shuffled.
struct EpochPosition {
    /// The 0-based epoch.
    var epoch: Int
    /// Batches of `epoch` already trained, from 1 to `batchesPerEpoch - 1`.
    var completedBatches: Int
    var batchesPerEpoch: Int
    /// The training samples of the epoch, after the validation split.
    var trainingSamples: Int
    /// The batch size that `fit` used, at most `trainingSamples`.
    var batchSize: Int
    /// The model's generator at the start of `epoch`, before the shuffle drew from it;
    /// nil when `fit` did not shuffle.
    var shuffleGenerator: SeededGenerator?
}
