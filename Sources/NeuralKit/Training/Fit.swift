import Foundation

extension Sequential {
    /// Trains the model, as Keras' `fit`.
    ///
    /// - Parameters:
    ///   - x: inputs of shape `(N, ...)`.
    ///   - y: targets with `N` rows: class indices for a sparse loss, one-hot rows for a categorical one.
    ///   - batchSize: samples per step; positive; default 32. The last batch of an epoch may be smaller.
    ///   - epochs: passes over the training data; non-negative; default 1.
    ///   - verbose: default `.progressBar`.
    ///   - validationSplit: the fraction in [0, 1) of the samples kept for validation. As in
    ///     Keras they are the last ones, `x[floor(N * (1 - validationSplit))...]`, taken
    ///     before any shuffling. Ignored when `validationData` is given.
    ///   - validationData: inputs and targets evaluated at the end of each epoch.
    ///   - shuffle: whether training samples are shuffled before each epoch; default true.
    ///   - classWeight: a weight per class index that scales each sample's loss. Classes
    ///     missing from it weigh 1. Targets must be `(N)`, `(N, 1)` or one-hot `(N, C)`.
    ///   - sampleWeight: a weight per sample, `(N)`, multiplied with `classWeight`.
    ///   - callbacks: objects notified at the start and end of training, epochs and
    ///     batches, in order; see `Callback`.
    ///   - initialEpoch: the 0-based epoch to start at, as Keras' `initial_epoch`, for
    ///     continuing a loaded model; epochs `initialEpoch..<epochs` run, and `History`
    ///     numbers them from `initialEpoch`. Non-negative; default 0.
    ///   - interruption: checked after every batch; a request stops training early, as
    ///     `TrainingInterruption` describes. Nil, the default, never stops.
    ///   - output: receives the printed text; nil prints to standard output.
    /// - Returns: the loss and metrics of each epoch.
    /// - Throws: `NeuralKitError` for invalid arguments, mismatched shapes or labels
    ///   (before the first step), or a NaN or infinite loss during training, which stops
    ///   training with the weights of the last good step. Errors thrown by callbacks
    ///   propagate unchanged.
    ///
    /// Each epoch shuffles with a generator drawn from the model's generator at the
    /// start of that epoch. A model saved at the end of epoch `e` (0-based) and loaded
    /// therefore trains with `initialEpoch: e + 1` bit for bit like the uninterrupted
    /// run, on the same machine and thread count. A model saved inside epoch `e`, after
    /// an interruption or `stopTraining`, records the batches done. With `initialEpoch:
    /// e` it continues at the next batch, also bit for bit, when the training samples,
    /// batch size and `shuffle` are unchanged (see `continuableEpoch`). That epoch's
    /// logs then cover the remaining batches.
    @discardableResult
    public func fit(
        x: some ModelInput, y: some TargetConvertible,
        batchSize: Int = 32, epochs: Int = 1, verbose: Verbosity = .progressBar, callbacks: [any Callback] = [],
        validationSplit: Double = 0, validationData: (x: any ModelInput, y: any TargetConvertible)? = nil,
        shuffle: Bool = true, classWeight: [Int: Float]? = nil, sampleWeight: Tensor<Float>? = nil,
        initialEpoch: Int = 0, interruption: TrainingInterruption? = nil,
        output: ((String) -> Void)? = nil
    ) throws -> History {
        guard let loss, let optimizer else {
            throw NeuralKitError.notReady("model '\(name)' must be compiled before fit; call compile(loss:optimizer:metrics:)")
        }
        try requirePositiveBatchSize(batchSize)
        guard epochs >= 0 else { throw NeuralKitError.invalidArgument("epochs must be non-negative, got \(epochs)") }
        guard initialEpoch >= 0 else {
            throw NeuralKitError.invalidArgument("initialEpoch must be non-negative, got \(initialEpoch)")
        }
        guard validationSplit >= 0, validationSplit < 1 else {
            throw NeuralKitError.invalidArgument("validationSplit must be in [0, 1), got \(validationSplit)")
        }
        let targets = y.targets
        try requireMatchingRows(x, targets, weights: sampleWeight)
        try prepare(for: x)

        // Split before shuffling, as Keras does: validation takes the last samples. The
        // inputs are not copied: training indexes rows below the split, validation the rest.
        var trainCount = x.shape[0]
        var trainY = targets
        var trainWeights = try sampleWeights(for: targets, classWeight: classWeight, sampleWeight: sampleWeight)
        var validation: (x: any ModelInput, rows: Range<Int>, y: Targets, weights: [Float]?)?
        if let validationData {
            try requireMatchingRows(validationData.x, validationData.y.targets, weights: nil)
            validation = (validationData.x, 0..<validationData.x.shape[0], validationData.y.targets, nil)
        } else if validationSplit > 0 {
            let count = x.shape[0]
            let splitAt = Int((Double(count) * (1 - validationSplit)).rounded(.down))
            guard splitAt > 0, splitAt < count else {
                throw NeuralKitError.invalidArgument(
                    "validationSplit \(validationSplit) of \(count) samples leaves \(splitAt) for training and \(count - splitAt) "
                        + "for validation; both need at least one sample")
            }
            validation = (
                x, splitAt..<count, targets.slicing(rows: splitAt..<count),
                sampleWeight.map { Array($0.scalars[splitAt...]) })
            trainCount = splitAt
            trainY = targets.slicing(rows: 0..<splitAt)
            trainWeights = trainWeights.map { Array($0[..<splitAt]) }
        }

        let predictionShape = [trainCount] + (outputShape ?? [])
        try loss.validate(targets: trainY, predictionShape: predictionShape)
        if let validation {
            try prepare(for: validation.x)
            try loss.validate(targets: validation.y, predictionShape: [validation.rows.count] + (outputShape ?? []))
        }

        let logger = ProgressLogger(verbosity: verbose, write: output)
        let callbackList = CallbackList(callbacks, model: self)
        var history = History()
        let sampleCount = trainCount
        // A batch larger than the data is one batch, as in Keras; clamping also keeps
        // `(step + 1) * batchSize` below overflow for a batch size near Int.max.
        let batchSize = min(batchSize, sampleCount)
        let steps = sampleCount / batchSize + (sampleCount % batchSize == 0 ? 0 : 1)
        var order = Array(0..<sampleCount)
        var batchX = Tensor<Float>(zeros: [0])
        var lastEpochLogs: [String: Float] = [:]
        stopTraining = false
        // A model stopped inside epoch `initialEpoch` with the same samples, batch size and
        // shuffle setting continues that epoch at its next batch, with the same shuffle.
        var resumed = continuableEpoch(trainingSamples: sampleCount, batchSize: batchSize, shuffle: shuffle)
            .flatMap { $0.epoch == initialEpoch ? epochPosition : nil }
        interruption?.beginTraining()
        try callbackList.trainBegin()

        epochLoop: for epoch in initialEpoch..<max(epochs, initialEpoch) {
            logger.beginEpoch(epoch, of: epochs)
            try callbackList.epochBegin(epoch)
            let epochStart = Date()
            let firstStep = resumed?.completedBatches ?? 0
            if let shuffleGenerator = resumed?.shuffleGenerator {
                generator = shuffleGenerator
            }
            resumed = nil
            epochPosition = nil
            let epochStartGenerator = generator
            if shuffle {
                // A fresh generator and order per epoch make each epoch's shuffle depend
                // only on the model's generator, which model files store.
                var shuffler = generator.split()
                order = Array(0..<sampleCount)
                order.shuffle(using: &shuffler)
            }
            for metric in metrics { metric.reset() }
            var lossTotal = 0.0
            var seen = 0

            for step in firstStep..<steps {
                try callbackList.batchBegin(step)
                let indices = order[(step * batchSize)..<min((step + 1) * batchSize, sampleCount)]
                x.gatherFloats(rows: indices, into: &batchX)
                let batchY = trainY.gathering(rows: indices)
                let batchWeights = trainWeights.map { weights in indices.map { weights[$0] } }
                let stepLoss: Float
                do {
                    stepLoss = try trainStep(x: batchX, y: batchY, sampleWeight: batchWeights, loss: loss, optimizer: optimizer)
                } catch NeuralKitError.nonFiniteValue(let message) {
                    throw NeuralKitError.nonFiniteValue(
                        "epoch \(epoch + 1), batch \(step + 1): \(message); training stopped, and the weights are those after the last good batch")
                }
                lossTotal += Double(stepLoss) * Double(indices.count)
                seen += indices.count
                epochPosition = step + 1 < steps
                    ? EpochPosition(
                        epoch: epoch, completedBatches: step + 1, batchesPerEpoch: steps, trainingSamples: sampleCount,
                        batchSize: batchSize, shuffleGenerator: shuffle ? epochStartGenerator : nil)
                    : nil
                let batchLogs = [("loss", Float(lossTotal / Double(seen)))] + metricLogs()
                logger.batchEnded(step: step + 1, of: steps, logs: batchLogs)
                if !callbackList.isEmpty { try callbackList.batchEnd(step, logs: logsDictionary(batchLogs)) }

                if let interruption, interruption.isRequested, step + 1 < steps {
                    logger.endInterruptedEpoch(step: step + 1, of: steps, logs: batchLogs)
                    let stop = TrainingInterruption.StopPoint(epoch: epoch, completedBatches: step + 1, batchesPerEpoch: steps)
                    try stopForInterruption(interruption, at: stop, logs: logsDictionary(batchLogs), callbacks: callbackList)
                    break epochLoop
                }
                if stopTraining { break }
            }
            let trainingSeconds = Date().timeIntervalSince(epochStart)

            // `seen` is below `sampleCount` only when `stopTraining` ended the epoch early.
            var logs = [("loss", Float(lossTotal / Double(seen)))] + metricLogs()
            if let validation {
                let validationLogs = try evaluateLogs(
                    x: validation.x, rows: validation.rows, y: validation.y, sampleWeight: validation.weights, batchSize: batchSize)
                logs += validationLogs.map { ("val_" + $0.0, $0.1) }
            }
            logger.endEpoch(steps: steps, stepsRun: steps - firstStep, trainingSeconds: trainingSeconds, logs: logs)
            history.append(epoch: epoch, logs: logs, seconds: Date().timeIntervalSince(epochStart))
            lastEpochLogs = logsDictionary(logs)
            try callbackList.epochEnd(epoch, logs: lastEpochLogs)

            if stopTraining { break }
            if let interruption, interruption.isRequested, epoch + 1 < epochs {
                let stop = TrainingInterruption.StopPoint(epoch: epoch, completedBatches: steps, batchesPerEpoch: steps)
                try stopForInterruption(interruption, at: stop, logs: lastEpochLogs, callbacks: callbackList)
                break
            }
        }
        try callbackList.trainEnd(logs: lastEpochLogs)
        return history
    }

    /// Records where an interruption stopped `fit` and calls the callbacks' `trainInterrupted`.
    private func stopForInterruption(
        _ interruption: TrainingInterruption, at stop: TrainingInterruption.StopPoint, logs: [String: Float], callbacks: CallbackList
    ) throws {
        interruption.recordStop(stop)
        try callbacks.trainInterrupted(epoch: stop.epoch, completedBatches: stop.completedBatches, logs: logs)
    }

    /// Computes the loss and metrics on `x`, as Keras' `evaluate(return_dict=True)`.
    ///
    /// - Returns: `loss` and each metric by name, e.g. `["loss": 0.0252, "accuracy": 0.9932]`.
    public func evaluate(
        x: some ModelInput, y: some TargetConvertible, batchSize: Int = 32, sampleWeight: Tensor<Float>? = nil
    ) throws -> [String: Float] {
        guard loss != nil else {
            throw NeuralKitError.notReady("model '\(name)' must be compiled before evaluate; call compile(loss:optimizer:metrics:)")
        }
        try requirePositiveBatchSize(batchSize)
        let targets = y.targets
        try requireMatchingRows(x, targets, weights: sampleWeight)
        try prepare(for: x)
        try loss!.validate(targets: targets, predictionShape: [x.shape[0]] + (outputShape ?? []))
        let logs = try evaluateLogs(x: x, rows: 0..<x.shape[0], y: targets, sampleWeight: sampleWeight?.scalars, batchSize: batchSize)
        return Dictionary(logs, uniquingKeysWith: { first, _ in first })
    }

    /// The metric names in the order `fit` logs them, after `loss`.
    public var metricsNames: [String] { ["loss"] + metrics.map(\.name) }

    /// Runs one training step and returns the batch loss.
    func trainStep(x: Tensor<Float>, y: Targets, sampleWeight: [Float]?, loss: any Loss, optimizer: any Optimizer) throws -> Float {
        let predictions = forward(x, training: true)
        let logitsLayer = softmaxLogitsLayer
        let elements = try loss.elementLosses(
            targets: y, predictions: logitsLayer?.lastLogits ?? predictions,
            predictionsAreLogits: loss.fromLogits || logitsLayer != nil)
        let (value, gradient) = try reduce(elements, sampleWeight: sampleWeight, reduction: loss.reduction)
        let lossValue = value.scalars[0]
        guard lossValue.isFinite else {
            throw NeuralKitError.nonFiniteValue("the loss is \(lossValue)")
        }
        for metric in metrics { try metric.update(targets: y, predictions: predictions) }

        // Layers before the first one with parameters need no input gradient.
        let firstTrainable = layers.firstIndex { !$0.parameters.isEmpty } ?? layers.count
        var outputGradient: Tensor<Float>? = gradient
        for index in stride(from: layers.count - 1, through: firstTrainable, by: -1) {
            guard let current = outputGradient else { break }
            let needsInputGradient = index > firstTrainable
            if index == layers.count - 1, let logitsLayer {
                outputGradient = logitsLayer.backward(logitsGradient: current, needsInputGradient: needsInputGradient)
            } else {
                outputGradient = layers[index].backward(current, needsInputGradient: needsInputGradient)
            }
        }
        // A non-finite gradient would poison the weights, so the step stops before the update.
        for layer in layers {
            for parameter in layer.parameters {
                if let index = parameter.gradient.scalars.firstIndex(where: { !$0.isFinite }) {
                    throw NeuralKitError.nonFiniteValue(
                        "the gradient of \(layer.name)/\(parameter.name) is \(parameter.gradient.scalars[index]) at "
                            + formatIndex(index, shape: parameter.gradient.shape))
                }
            }
        }
        // The update itself can overflow (a huge learning rate). The saved values share storage
        // with the parameters until the update writes, so keeping them costs one copy per step.
        let parameters = self.parameters
        let previousValues = parameters.map(\.value)
        optimizer.apply(to: parameters)
        if parameters.contains(where: { $0.value.scalars.contains { !$0.isFinite } }) {
            for (parameter, value) in zip(parameters, previousValues) { parameter.value = value }
            throw NeuralKitError.nonFiniteValue(
                "the weight update produced NaN or infinity, so it was undone; lower the learning rate")
        }
        return lossValue
    }

    /// Evaluates the samples `x[rows]`, whose targets are `y` (indexed from 0), in batches
    /// without dropout; the loss is averaged over samples.
    func evaluateLogs(x: some ModelInput, rows: Range<Int>, y: Targets, sampleWeight: [Float]?, batchSize: Int) throws -> [(String, Float)] {
        guard let loss else { return [] }
        for metric in metrics { metric.reset() }
        let count = rows.count
        let batchSize = min(batchSize, max(count, 1))
        var lossTotal = 0.0
        for start in stride(from: 0, to: count, by: batchSize) {
            let range = start..<min(start + batchSize, count)
            let batchY = y.slicing(rows: range)
            let predictions = forward(x.floatRows((rows.lowerBound + range.lowerBound)..<(rows.lowerBound + range.upperBound)), training: false)
            let logitsLayer = softmaxLogitsLayer
            let elements = try loss.elementLosses(
                targets: batchY, predictions: logitsLayer?.lastLogits ?? predictions,
                predictionsAreLogits: loss.fromLogits || logitsLayer != nil)
            let weights = sampleWeight.map { Array($0[range]) }
            let value = try reduce(elements, sampleWeight: weights, reduction: loss.reduction).value.scalars[0]
            lossTotal += Double(value) * Double(range.count)
            for metric in metrics { try metric.update(targets: batchY, predictions: predictions) }
        }
        return [("loss", count > 0 ? Float(lossTotal / Double(count)) : 0)] + metricLogs()
    }

    private func metricLogs() -> [(String, Float)] {
        metrics.map { ($0.name, $0.result) }
    }

    /// Combines class weights and sample weights into one weight per sample, or nil for none.
    private func sampleWeights(for targets: Targets, classWeight: [Int: Float]?, sampleWeight: Tensor<Float>?) throws -> [Float]? {
        guard let classWeight else { return sampleWeight?.scalars }
        let shape = targets.shape
        let rows = shape.first ?? 0
        var weights = sampleWeight?.scalars ?? [Float](repeating: 1, count: rows)
        let classes: [Int]
        switch targets {
        case .classIndices(let tensor) where shape.count == 1 || (shape.count == 2 && shape[1] == 1):
            classes = tensor.scalars
        case .values(let tensor) where shape.count == 1 || (shape.count == 2 && shape[1] == 1):
            classes = tensor.scalars.map { Int($0) }
        case .values(let tensor) where shape.count == 2:
            classes = (0..<rows).map { row in
                tensor.scalars.withUnsafeBufferPointer { argmax($0.baseAddress! + row * shape[1], count: shape[1]) }
            }
        default:
            throw NeuralKitError.invalidArgument(
                "classWeight needs targets of shape (N), (N, 1) or one-hot (N, C), got \(formatShape(shape)); "
                    + "pass per-element weights through sampleWeight instead")
        }
        for row in 0..<rows { weights[row] *= classWeight[classes[row]] ?? 1 }
        return weights
    }

    /// Checks that inputs, targets and weights have the same number of samples.
    private func requireMatchingRows(_ x: some ModelInput, _ y: Targets, weights: Tensor<Float>?) throws {
        let count = x.shape.first ?? 0
        guard count > 0 else {
            throw NeuralKitError.invalidArgument("x has shape \(formatShape(x.shape)); it needs at least one sample")
        }
        guard y.shape.first == count else {
            throw NeuralKitError.incompatibleShapes(
                "x has \(count) samples (shape \(formatShape(x.shape))) but y has \(y.shape.first ?? 0) "
                    + "(shape \(formatShape(y.shape))); pass one target per sample")
        }
        if let weights, weights.shape != [count] {
            throw NeuralKitError.incompatibleShapes(
                "sampleWeight has shape \(formatShape(weights.shape)) but x has \(count) samples; pass one weight per sample, shape (\(count),)")
        }
    }
}
