import Foundation

extension Sequential {
    /// Saves the whole model to one file, as Keras' `model.save`: the architecture, the
    /// weights, the `compile` configuration, the optimizer state and the state of every
    /// random generator. A model loaded with `Sequential.load(from:)` predicts the same
    /// outputs and, given the same data and `fit` arguments, trains to the same weights
    /// bit for bit as this one, on the same machine and thread count.
    ///
    /// The file replaces any file at `url` atomically: a failed or killed save leaves
    /// the previous file intact. docs/model-format.md describes the format.
    ///
    /// - Throws: `NeuralKitError.invalidArgument` when the model contains a layer, loss,
    ///   optimizer or metric type the format cannot store (save the weights alone with
    ///   `saveWeights(to:)`), and `NeuralKitError.invalidData` when writing fails.
    public func save(to url: URL) throws {
        var tensors = TensorDataWriter()
        let model = try makeModelRecord(tensors: &tensors, weightsOnly: false)
        let compile = try makeCompileRecord(tensors: &tensors)
        let header = ModelFileHeader(producer: "NeuralKit", model: model, compile: compile, tensors: tensors.records)
        try writeModelFile(header: header, tensorData: tensors.data, flags: [], to: url)
    }

    /// Saves only the weights, as Keras' `model.save_weights`, in the model file format
    /// with the weights-only flag. Layers of any type are accepted.
    ///
    /// - Throws: `NeuralKitError.invalidData` when writing fails.
    public func saveWeights(to url: URL) throws {
        var tensors = TensorDataWriter()
        let model = try makeModelRecord(tensors: &tensors, weightsOnly: true)
        let header = ModelFileHeader(producer: "NeuralKit", model: model, compile: nil, tensors: tensors.records)
        try writeModelFile(header: header, tensorData: tensors.data, flags: .weightsOnly, to: url)
    }

    private func writeModelFile(header: ModelFileHeader, tensorData: [UInt8], flags: ModelFileFlags, to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json: Data
        do {
            json = try encoder.encode(header)
        } catch {
            throw NeuralKitError.invalidArgument("cannot save model '\(name)': encoding its JSON header failed: \(error)")
        }
        let bytes = ModelFileContainer.assemble(flags: flags, header: [UInt8](json), tensorData: tensorData)
        try AtomicFileWriter.replaceFile(at: url, with: bytes)
    }

    private func makeModelRecord(tensors: inout TensorDataWriter, weightsOnly: Bool) throws -> ModelRecord {
        var layerRecords: [LayerRecord] = []
        for layer in layers {
            let config = layerConfig(of: layer)
            if config == nil && !weightsOnly {
                throw NeuralKitError.invalidArgument(
                    "cannot save model '\(name)': layer '\(layer.name)' has type \(layer.typeName), but model files store only "
                        + "InputLayer, Rescaling, Conv2D, MaxPooling2D, Dropout, Flatten and Dense layers; "
                        + "save the weights alone with saveWeights(to:)")
            }
            let weights = layer.parameters.map { tensors.append(name: "\(layer.name)/\($0.name)", $0.value) }
            var record = LayerRecord(type: layer.typeName, name: layer.name, config: config ?? LayerConfig(), weights: weights)
            if !weightsOnly, let dropout = layer as? Dropout {
                record.generatorState = dropout.maskGenerator.stateRecord
            }
            layerRecords.append(record)
        }
        let generatorState = weightsOnly ? nil : generator.stateRecord
        let position = weightsOnly ? nil : epochPosition.map { position in
            EpochPositionRecord(
                epoch: position.epoch, completedBatches: position.completedBatches, batchesPerEpoch: position.batchesPerEpoch,
                trainingSamples: position.trainingSamples, batchSize: position.batchSize,
                shuffleGeneratorState: position.shuffleGenerator?.stateRecord)
        }
        return ModelRecord(
            name: name, inputShape: inputShape, generatorState: generatorState, layers: layerRecords, epochPosition: position)
    }

    /// Returns the constructor arguments of a layer type that model files store, or nil for other types.
    private func layerConfig(of layer: any Layer) -> LayerConfig? {
        var config = LayerConfig()
        switch layer {
        case let input as Input:
            config.shape = input.shape
        case let dense as Dense:
            config.units = dense.units
            config.activation = dense.activation.rawValue
            config.useBias = dense.useBias
        case let convolution as Conv2D:
            config.filters = convolution.filters
            config.kernelSize = [convolution.kernelSize.0, convolution.kernelSize.1]
            config.strides = [convolution.strides.0, convolution.strides.1]
            config.padding = convolution.padding.rawValue
            config.activation = convolution.activation.rawValue
            config.useBias = convolution.useBias
        case let pooling as MaxPooling2D:
            config.poolSize = [pooling.poolSize.0, pooling.poolSize.1]
            config.strides = [pooling.strides.0, pooling.strides.1]
            config.padding = pooling.padding.rawValue
        case let dropout as Dropout:
            config.rate = dropout.rate
        case is Flatten:
            break
        case let rescaling as Rescaling:
            config.scale = rescaling.scale
            config.offset = rescaling.offset
        default:
            return nil
        }
        return config
    }

    private func makeCompileRecord(tensors: inout TensorDataWriter) throws -> CompileRecord? {
        guard let loss, let optimizer else { return nil }
        return CompileRecord(
            loss: try lossRecord(loss),
            optimizer: try optimizerRecord(optimizer, tensors: &tensors),
            metricNames: metricNames,
            metricObjects: try metricObjects.map(metricRecord))
    }

    private func lossRecord(_ loss: any Loss) throws -> LossRecord {
        switch loss {
        case let sparse as SparseCategoricalCrossentropy:
            return LossRecord(
                type: "SparseCategoricalCrossentropy",
                config: LossConfig(fromLogits: sparse.fromLogits, reduction: sparse.reduction.rawValue, ignoreClass: sparse.ignoreClass))
        case let categorical as CategoricalCrossentropy:
            return LossRecord(
                type: "CategoricalCrossentropy",
                config: LossConfig(
                    fromLogits: categorical.fromLogits, reduction: categorical.reduction.rawValue, labelSmoothing: categorical.labelSmoothing))
        default:
            throw NeuralKitError.invalidArgument(
                "cannot save model '\(name)': its loss has type \(type(of: loss)), but model files store only "
                    + "SparseCategoricalCrossentropy and CategoricalCrossentropy; save the weights alone with saveWeights(to:)")
        }
    }

    private func optimizerRecord(_ optimizer: any Optimizer, tensors: inout TensorDataWriter) throws -> OptimizerRecord {
        switch optimizer {
        case let adam as Adam:
            let state = adam.state
            return OptimizerRecord(
                type: "Adam",
                config: OptimizerConfig(learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2, epsilon: adam.epsilon),
                iterations: state.iterations,
                slots: [
                    "m": try appendSlot("m", state.firstMoments, tensors: &tensors),
                    "v": try appendSlot("v", state.secondMoments, tensors: &tensors),
                ])
        case let sgd as SGD:
            let state = sgd.state
            return OptimizerRecord(
                type: "SGD",
                config: OptimizerConfig(learningRate: sgd.learningRate, momentum: sgd.momentum, nesterov: sgd.nesterov),
                iterations: state.iterations,
                slots: ["velocity": try appendSlot("velocity", state.velocities, tensors: &tensors)])
        default:
            throw NeuralKitError.invalidArgument(
                "cannot save model '\(name)': its optimizer has type \(type(of: optimizer)), but model files store only Adam and SGD; "
                    + "save the weights alone with saveWeights(to:)")
        }
    }

    /// Appends one optimizer slot, one tensor per parameter shaped like it, and returns the tensor indices.
    private func appendSlot(_ slot: String, _ buffers: [[Float]], tensors: inout TensorDataWriter) throws -> [Int] {
        let parameterNames = layers.flatMap { layer in layer.parameters.map { "\(layer.name)/\($0.name)" } }
        let parameters = self.parameters
        // The optimizer reallocates its buffers on the next update when their number
        // differs from the parameter count, so saving none restores the same behaviour.
        guard buffers.count == parameters.count else { return [] }
        var indices: [Int] = []
        for (index, (buffer, parameter)) in zip(buffers, parameters).enumerated() {
            guard buffer.count == parameter.value.count else {
                throw NeuralKitError.invalidArgument(
                    "cannot save model '\(name)': the optimizer's \(slot) buffer for \(parameterNames[index]) has \(buffer.count) values, "
                        + "but the parameter has \(parameter.value.count); compile the model with a new optimizer")
            }
            let tensor = Tensor(shape: parameter.value.shape, scalars: buffer)
            indices.append(tensors.append(name: "optimizer/\(slot)/\(parameterNames[index])", tensor))
        }
        return indices
    }

    private func metricRecord(_ metric: any Metric) throws -> MetricRecord {
        switch metric {
        case let topK as SparseTopKCategoricalAccuracy:
            return MetricRecord(type: "SparseTopKCategoricalAccuracy", name: topK.name, k: topK.k)
        case let binary as BinaryAccuracy:
            return MetricRecord(type: "BinaryAccuracy", name: binary.name, threshold: binary.threshold)
        case let sparse as SparseCategoricalAccuracy:
            return MetricRecord(type: "SparseCategoricalAccuracy", name: metric.name, ignoreClass: sparse.ignoreClass)
        case is CategoricalAccuracy:
            return MetricRecord(type: "CategoricalAccuracy", name: metric.name)
        default:
            throw NeuralKitError.invalidArgument(
                "cannot save model '\(name)': metric '\(metric.name)' has type \(type(of: metric)), but model files store only "
                    + "SparseCategoricalAccuracy, CategoricalAccuracy, SparseTopKCategoricalAccuracy and BinaryAccuracy objects; "
                    + "compile with metric names, or save the weights alone with saveWeights(to:)")
        }
    }
}
