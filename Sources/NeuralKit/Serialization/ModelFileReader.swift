import Foundation

/// A model file whose container, JSON header and tensor table passed every check, with
/// the helpers that turn its records back into layers, losses, optimizers and metrics.
///
/// Every helper throws `NeuralKitError.invalidData` naming the file and the record.
struct ModelFileReader {
    let path: String
    let flags: ModelFileFlags
    let header: ModelFileHeader
    private let tensorData: ArraySlice<UInt8>

    /// Reads and checks `url`: container, JSON header and tensor table.
    init(url: URL) throws {
        path = url.path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw NeuralKitError.invalidData(file: path, reason: "file not found")
        }
        guard !isFolder.boolValue else {
            throw NeuralKitError.invalidData(file: path, reason: "is a folder, not a model file; pass a file in it, such as a .nk file")
        }
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: url))
        } catch {
            throw NeuralKitError.invalidData(file: path, reason: "cannot be read: \(error.localizedDescription)")
        }

        let parts = try ModelFileContainer.parse(bytes, path: path)
        flags = parts.flags
        tensorData = parts.tensorData
        do {
            header = try JSONDecoder().decode(ModelFileHeader.self, from: Data(parts.header))
        } catch let error as DecodingError {
            throw NeuralKitError.invalidData(file: path, reason: "invalid JSON header: \(describe(error))")
        }
        try validateTensorTable()
    }

    func invalid(_ reason: String) -> NeuralKitError {
        NeuralKitError.invalidData(file: path, reason: reason)
    }

    /// Checks that every tensor record is float32, has a valid shape and lies inside the data section.
    private func validateTensorTable() throws {
        for (index, record) in header.tensors.enumerated() {
            let label = "tensor \(index) ('\(record.name)')"
            guard record.dtype == TensorRecord.float32 else {
                throw invalid("\(label) has dtype '\(record.dtype)', but format version 1 stores only float32")
            }
            guard record.shape.allSatisfy({ $0 >= 0 }) else {
                throw invalid("\(label) has invalid shape \(formatShape(record.shape))")
            }
            var count = 1
            for dimension in record.shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw invalid("\(label) has shape \(formatShape(record.shape)), too large for this platform") }
                count = product
            }
            let (expectedByteCount, overflow) = count.multipliedReportingOverflow(by: 4)
            guard !overflow, record.byteCount == expectedByteCount else {
                throw invalid("\(label) has byteCount \(record.byteCount), but shape \(formatShape(record.shape)) needs \(count) float32 values")
            }
            guard record.offset >= 0, record.offset <= tensorData.count - record.byteCount else {
                throw invalid(
                    "\(label) has \(record.byteCount) bytes at offset \(record.offset), which do not fit in the "
                        + "\(tensorData.count)-byte data section")
            }
        }
    }

    /// Reads the tensor at `index` in the tensor table. `user` names the record that refers to it in errors.
    func tensor(at index: Int, for user: String) throws -> Tensor<Float> {
        guard header.tensors.indices.contains(index) else {
            throw invalid("\(user) refers to tensor \(index), but the file has \(header.tensors.count) tensors")
        }
        let record = header.tensors[index]
        let start = tensorData.startIndex + record.offset
        let bytes = tensorData[start..<(start + record.byteCount)]
        var scalars = [Float](repeating: 0, count: record.byteCount / 4)
        #if _endian(little)
            scalars.withUnsafeMutableBytes { destination in
                bytes.withUnsafeBytes { destination.copyMemory(from: $0) }
            }
        #else
            for scalarIndex in scalars.indices {
                var bits: UInt32 = 0
                for byte in 0..<4 { bits |= UInt32(bytes[start + scalarIndex * 4 + byte]) << (8 * byte) }
                scalars[scalarIndex] = Float(bitPattern: bits)
            }
        #endif
        return Tensor(shape: record.shape, scalars: scalars)
    }

    /// Restores the generator stored for `owner`, throwing when the record is missing or malformed.
    func generator(from record: [String]?, owner: String) throws -> SeededGenerator {
        guard let record else {
            throw invalid("missing generator state of \(owner)")
        }
        guard let generator = SeededGenerator(stateRecord: record) else {
            throw invalid(
                "invalid generator state \(record) of \(owner); expected four 16-digit hexadecimal words, not all zero")
        }
        return generator
    }

    // MARK: - Layers

    /// Creates a layer from its record, before the model is built.
    func makeLayer(from record: LayerRecord, index: Int) throws -> any Layer {
        let label = "layer \(index) '\(record.name)' (\(record.type))"
        let config = record.config

        func require<Value>(_ value: Value?, _ field: String) throws -> Value {
            guard let value else { throw invalid("\(label): missing config field '\(field)'") }
            return value
        }
        func requirePair(_ value: [Int]?, _ field: String) throws -> (Int, Int) {
            let pair = try require(value, field)
            guard pair.count == 2 else { throw invalid("\(label): config field '\(field)' must hold [height, width], got \(pair)") }
            return (pair[0], pair[1])
        }
        func requireActivation() throws -> Activation {
            let name = try require(config.activation, "activation")
            guard let activation = Activation(rawValue: name) else {
                throw invalid(
                    "\(label): unknown activation '\(name)'; expected one of \(Activation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return activation
        }
        func requirePadding() throws -> Padding {
            let name = try require(config.padding, "padding")
            guard let padding = Padding(rawValue: name) else {
                throw invalid("\(label): unknown padding '\(name)'; expected valid or same")
            }
            return padding
        }

        switch record.type {
        case "InputLayer":
            return Input(shape: try require(config.shape, "shape"), name: record.name)
        case "Dense":
            return Dense(
                units: try require(config.units, "units"), activation: try requireActivation(),
                useBias: try require(config.useBias, "useBias"), name: record.name)
        case "Conv2D":
            return Conv2D(
                filters: try require(config.filters, "filters"), kernelSize: try requirePair(config.kernelSize, "kernelSize"),
                strides: try requirePair(config.strides, "strides"), padding: try requirePadding(),
                activation: try requireActivation(), useBias: try require(config.useBias, "useBias"), name: record.name)
        case "MaxPooling2D":
            return MaxPooling2D(
                poolSize: try requirePair(config.poolSize, "poolSize"), strides: try requirePair(config.strides, "strides"),
                padding: try requirePadding(), name: record.name)
        case "Dropout":
            return Dropout(rate: try require(config.rate, "rate"), name: record.name)
        case "Flatten":
            return Flatten(name: record.name)
        case "Rescaling":
            return Rescaling(scale: try require(config.scale, "scale"), offset: try require(config.offset, "offset"), name: record.name)
        default:
            throw invalid(
                "\(label) has an unknown layer type; model files store InputLayer, Rescaling, Conv2D, MaxPooling2D, Dropout, "
                    + "Flatten and Dense")
        }
    }

    /// Checks a layer's stored weights against the parameters its architecture built and
    /// returns them in parameter order.
    func weights(of layer: any Layer, from record: LayerRecord) throws -> [Tensor<Float>] {
        let parameters = layer.parameters
        let label = "layer '\(layer.name)' (\(layer.typeName))"
        guard record.weights.count == parameters.count else {
            throw invalid(
                "\(label) stores \(record.weights.count) weight tensors, but its architecture has \(parameters.count) "
                    + "(\(parameters.map(\.name).joined(separator: ", ")))")
        }
        var values: [Tensor<Float>] = []
        for (parameter, index) in zip(parameters, record.weights) {
            let value = try tensor(at: index, for: "the \(parameter.name) of \(label)")
            guard value.shape == parameter.value.shape else {
                throw invalid(
                    "the \(parameter.name) of \(label) has stored shape \(formatShape(value.shape)), but the architecture "
                        + "gives it shape \(formatShape(parameter.value.shape))")
            }
            values.append(value)
        }
        return values
    }

    // MARK: - Compile configuration

    func makeLoss(from record: LossRecord) throws -> any Loss {
        let config = record.config
        guard let reduction = Reduction(rawValue: config.reduction) else {
            throw invalid("loss \(record.type): unknown reduction '\(config.reduction)'; expected sum_over_batch_size, sum or none")
        }
        switch record.type {
        case "SparseCategoricalCrossentropy":
            return SparseCategoricalCrossentropy(fromLogits: config.fromLogits, ignoreClass: config.ignoreClass, reduction: reduction)
        case "CategoricalCrossentropy":
            guard let labelSmoothing = config.labelSmoothing else {
                throw invalid("loss CategoricalCrossentropy: missing config field 'labelSmoothing'")
            }
            return CategoricalCrossentropy(fromLogits: config.fromLogits, labelSmoothing: labelSmoothing, reduction: reduction)
        default:
            throw invalid("unknown loss type '\(record.type)'; model files store SparseCategoricalCrossentropy and CategoricalCrossentropy")
        }
    }

    /// Creates the optimizer with its hyperparameters. `restoreState` adds its state after `compile`.
    func makeOptimizer(from record: OptimizerRecord) throws -> any Optimizer {
        let config = record.config
        func require<Value>(_ value: Value?, _ field: String) throws -> Value {
            guard let value else { throw invalid("optimizer \(record.type): missing config field '\(field)'") }
            return value
        }
        switch record.type {
        case "Adam":
            return Adam(
                learningRate: config.learningRate, beta1: try require(config.beta1, "beta1"),
                beta2: try require(config.beta2, "beta2"), epsilon: try require(config.epsilon, "epsilon"))
        case "SGD":
            return SGD(
                learningRate: config.learningRate, momentum: try require(config.momentum, "momentum"),
                nesterov: try require(config.nesterov, "nesterov"))
        default:
            throw invalid("unknown optimizer type '\(record.type)'; model files store Adam and SGD")
        }
    }

    /// Restores the update count and slot buffers of an optimizer made by `makeOptimizer`.
    func restoreState(of optimizer: any Optimizer, from record: OptimizerRecord, parameters: [Parameter]) throws {
        guard record.iterations >= 0 else {
            throw invalid("optimizer \(record.type): iterations must be non-negative, got \(record.iterations)")
        }
        switch optimizer {
        case let adam as Adam:
            let firstMoments = try slot("m", of: record, parameters: parameters)
            let secondMoments = try slot("v", of: record, parameters: parameters)
            guard firstMoments.count == secondMoments.count else {
                throw invalid("optimizer Adam: slot m has \(firstMoments.count) tensors, but slot v has \(secondMoments.count)")
            }
            adam.state = (record.iterations, firstMoments, secondMoments)
        case let sgd as SGD:
            sgd.state = (record.iterations, try slot("velocity", of: record, parameters: parameters))
        default:
            fatalError("makeOptimizer creates only Adam and SGD")
        }
    }

    /// Reads one slot's buffers: none, or one per parameter with the parameter's shape.
    private func slot(_ name: String, of record: OptimizerRecord, parameters: [Parameter]) throws -> [[Float]] {
        guard let indices = record.slots[name] else {
            throw invalid("optimizer \(record.type): missing slot '\(name)'")
        }
        guard indices.isEmpty || indices.count == parameters.count else {
            throw invalid(
                "optimizer \(record.type): slot '\(name)' has \(indices.count) tensors, but the model has \(parameters.count) parameters")
        }
        var buffers: [[Float]] = []
        for (position, (index, parameter)) in zip(indices, parameters).enumerated() {
            let value = try tensor(at: index, for: "optimizer \(record.type) slot '\(name)' entry \(position)")
            guard value.shape == parameter.value.shape else {
                throw invalid(
                    "optimizer \(record.type) slot '\(name)' entry \(position) has shape \(formatShape(value.shape)), "
                        + "but parameter \(position) has shape \(formatShape(parameter.value.shape))")
            }
            buffers.append(value.scalars)
        }
        return buffers
    }

    func makeMetric(from record: MetricRecord) throws -> any Metric {
        switch record.type {
        case "SparseCategoricalAccuracy":
            return SparseCategoricalAccuracy(ignoreClass: record.ignoreClass, name: record.name)
        case "CategoricalAccuracy":
            return CategoricalAccuracy(name: record.name)
        case "SparseTopKCategoricalAccuracy":
            guard let k = record.k else { throw invalid("metric '\(record.name)': missing field 'k'") }
            return SparseTopKCategoricalAccuracy(k: k, name: record.name)
        case "BinaryAccuracy":
            guard let threshold = record.threshold else { throw invalid("metric '\(record.name)': missing field 'threshold'") }
            return BinaryAccuracy(threshold: threshold, name: record.name)
        default:
            throw invalid(
                "metric '\(record.name)' has unknown type '\(record.type)'; model files store SparseCategoricalAccuracy, "
                    + "CategoricalAccuracy, SparseTopKCategoricalAccuracy and BinaryAccuracy")
        }
    }
}

/// Describes a JSON decoding error by the field path it occurred at.
private func describe(_ error: DecodingError) -> String {
    func fieldPath(_ codingPath: [any CodingKey]) -> String {
        var path = ""
        for key in codingPath {
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += path.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return path.isEmpty ? "(top level)" : path
    }
    switch error {
    case .keyNotFound(let key, let context):
        return "missing field '\(fieldPath(context.codingPath + [key]))'"
    case .typeMismatch(let type, let context):
        return "field '\(fieldPath(context.codingPath))' is not of type \(type)"
    case .valueNotFound(let type, let context):
        return "field '\(fieldPath(context.codingPath))' is null, expected \(type)"
    case .dataCorrupted(let context):
        return "\(context.debugDescription) at '\(fieldPath(context.codingPath))'"
    @unknown default:
        return "\(error)"
    }
}
