import Foundation

extension Sequential {
    /// Loads a model saved with `save(to:)`, as Keras' `keras.models.load_model`: the
    /// architecture, weights, `compile` configuration, optimizer state and generator
    /// states, so that training continues as if it had never stopped.
    ///
    /// - Throws: `NeuralKitError.invalidData` naming the file and the problem when it is
    ///   missing, truncated, corrupt (checksum mismatch), not a model file (wrong magic),
    ///   written by a newer format version, weights-only, or inconsistent.
    public static func load(from url: URL) throws -> Sequential {
        let file = try ModelFileReader(url: url)
        guard !file.flags.contains(.weightsOnly) else {
            throw file.invalid(
                "contains weights only, as written by saveWeights(to:); create the model in code and call loadWeights(from:)")
        }
        let record = file.header.model
        let modelGenerator = try file.generator(from: record.generatorState, owner: "the model")
        let layers = try record.layers.enumerated().map { index, layerRecord in
            try file.makeLayer(from: layerRecord, index: index)
        }

        let model = Sequential(layers, name: record.name)
        if let inputShape = record.inputShape {
            do {
                try model.build(inputShape: inputShape)
            } catch let error as NeuralKitError {
                throw file.invalid("the stored layers cannot be built for input shape \(formatShape(inputShape, unknownBatch: true)): \(error)")
            }
        }
        for (layer, layerRecord) in zip(model.layers, record.layers) {
            let values = try file.weights(of: layer, from: layerRecord)
            for (parameter, value) in zip(layer.parameters, values) {
                parameter.value = value
            }
            if let dropout = layer as? Dropout {
                dropout.maskGenerator = try file.generator(from: layerRecord.generatorState, owner: "Dropout layer '\(layer.name)'")
            }
        }
        // Set after `build`, which draws from the generator, so that the next draws
        // (a later build's weights, fit's shuffling) match the saved model's.
        model.generator = modelGenerator
        if let position = record.epochPosition {
            let batchSize = position.batchSize
            let consistent = batchSize >= 1 && position.trainingSamples >= 2 && batchSize <= position.trainingSamples
                && position.batchesPerEpoch == (position.trainingSamples + batchSize - 1) / batchSize
            guard position.epoch >= 0, position.batchesPerEpoch >= 2, position.completedBatches >= 1,
                position.completedBatches < position.batchesPerEpoch, consistent
            else {
                throw file.invalid(
                    "invalid epoch position: epoch \(position.epoch), \(position.completedBatches) of "
                        + "\(position.batchesPerEpoch) batches of \(batchSize) from \(position.trainingSamples) samples; "
                        + "expected a non-negative epoch, from 1 to one less than the batches per epoch, and batches "
                        + "that cover the samples. The file is corrupt, so use another checkpoint")
            }
            model.epochPosition = EpochPosition(
                epoch: position.epoch, completedBatches: position.completedBatches, batchesPerEpoch: position.batchesPerEpoch,
                trainingSamples: position.trainingSamples, batchSize: position.batchSize,
                shuffleGenerator: try position.shuffleGeneratorState.map {
                    try file.generator(from: $0, owner: "the epoch position's shuffle")
                })
        }

        if let compile = file.header.compile {
            try model.restoreCompile(compile, from: file)
        }
        return model
    }

    private func restoreCompile(_ record: CompileRecord, from file: ModelFileReader) throws {
        let loss = try file.makeLoss(from: record.loss)
        let optimizer = try file.makeOptimizer(from: record.optimizer)
        let metricObjects = try record.metricObjects.map(file.makeMetric)
        guard record.metricNames.isEmpty || metricObjects.isEmpty else {
            throw file.invalid("the compile configuration has both metric names and metric objects; compile accepts only one kind")
        }
        do {
            if metricObjects.isEmpty {
                try compile(loss: loss, optimizer: optimizer, metrics: record.metricNames)
            } else {
                try compile(loss: loss, optimizer: optimizer, metrics: metricObjects)
            }
        } catch let error as NeuralKitError {
            throw file.invalid("the stored compile configuration is invalid: \(error)")
        }
        try file.restoreState(of: optimizer, from: record.optimizer, parameters: parameters)
    }

    /// Loads weights saved with `saveWeights(to:)` or `save(to:)`, as Keras'
    /// `model.load_weights`. The layers with weights are matched by position, not by
    /// name, and must agree in type and in every weight shape. The optimizer state and
    /// generators are left as they are. Nothing changes unless every layer matches.
    ///
    /// An unbuilt model is built first, from its `Input` layer or else from the input
    /// shape stored in the file.
    ///
    /// - Throws: `NeuralKitError.incompatibleShapes` naming the first layer that does
    ///   not match and both shapes, and `NeuralKitError.invalidData` for a missing or
    ///   damaged file.
    public func loadWeights(from url: URL) throws {
        let file = try ModelFileReader(url: url)
        if inputShape == nil {
            if layers.first is Input {
                try buildFromInputLayer()
            } else if let storedShape = file.header.model.inputShape {
                try build(inputShape: storedShape)
                try resolveMetrics()
            }
        }

        let modelLayers = layers.filter { !$0.parameters.isEmpty }
        let fileLayers = file.header.model.layers.filter { !$0.weights.isEmpty }
        func mismatch(_ reason: String) -> NeuralKitError {
            NeuralKitError.incompatibleShapes("cannot load weights from \(file.path) into model '\(name)': \(reason)")
        }

        var assignments: [(Parameter, Tensor<Float>)] = []
        for (position, layer) in modelLayers.enumerated() {
            guard position < fileLayers.count else {
                throw mismatch(
                    "the model has \(modelLayers.count) layers with weights, but the file has \(fileLayers.count); "
                        + "layer '\(layer.name)' (\(layer.typeName)) has no counterpart in the file")
            }
            let stored = fileLayers[position]
            guard stored.type == layer.typeName else {
                throw mismatch(
                    "layer '\(layer.name)' is a \(layer.typeName), but the file's layer at the same position, '\(stored.name)', "
                        + "is a \(stored.type)")
            }
            let parameters = layer.parameters
            guard stored.weights.count == parameters.count else {
                throw mismatch(
                    "layer '\(layer.name)' (\(layer.typeName)) has \(parameters.count) weight tensors "
                        + "(\(parameters.map(\.name).joined(separator: ", "))), but the file's layer '\(stored.name)' has "
                        + "\(stored.weights.count); check useBias")
            }
            for (parameter, index) in zip(parameters, stored.weights) {
                let value = try file.tensor(at: index, for: "layer '\(stored.name)'")
                guard value.shape == parameter.value.shape else {
                    throw mismatch(
                        "layer '\(layer.name)' (\(layer.typeName)) has a \(parameter.name) of shape \(formatShape(parameter.value.shape)), "
                            + "but the file's layer '\(stored.name)' stores shape \(formatShape(value.shape))")
                }
                assignments.append((parameter, value))
            }
        }
        guard fileLayers.count == modelLayers.count else {
            let extra = fileLayers[modelLayers.count]
            let hint = inputShape == nil ? "; the model is not built, so call build(inputShape:) first" : ""
            throw mismatch(
                "the file has \(fileLayers.count) layers with weights, but the model has \(modelLayers.count); "
                    + "the file's layer '\(extra.name)' (\(extra.type)) has no counterpart in the model\(hint)")
        }

        for (parameter, value) in assignments {
            parameter.value = value
        }
    }
}
