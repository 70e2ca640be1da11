import Foundation
@testable import NeuralKit
import Testing

/// Makes the small convolutional model of the round-trip tests: 8x8x1 inputs, 10 classes.
private func makeConvModel(seed: UInt64 = 11, denseUnits: Int = 10) -> Sequential {
    Sequential([
        Input(shape: [8, 8, 1]),
        Conv2D(filters: 4, kernelSize: 3, activation: .relu),
        MaxPooling2D(poolSize: 2),
        Dropout(rate: 0.25),
        Flatten(),
        Dense(units: denseUnits, activation: .softmax),
    ], seed: seed)
}

/// Makes uniform images in [0, 1) and labels in 0..<10, both from one seeded generator.
private func makeImageData(count: Int = 96, seed: UInt64 = 5) -> (x: Tensor<Float>, y: Tensor<Int32>) {
    var generator = SeededGenerator(seed: seed)
    let pixels = (0..<(count * 64)).map { _ in generator.nextUnitFloat() }
    let labels = (0..<count).map { _ in Int32(generator.next() % 10) }
    return (Tensor(shape: [count, 8, 8, 1], scalars: pixels), Tensor(shape: [count], scalars: labels))
}

/// Returns the bit patterns of every parameter, so that comparisons are exact (NaN-safe and -0 != 0).
private func weightBits(_ model: Sequential) -> [[UInt32]] {
    model.parameters.map { $0.value.scalars.map(\.bitPattern) }
}

/// Describes the first element whose bits differ between two arrays, for a failure
/// message. Returns nil when the arrays are bit-identical.
private func firstBitDifference(_ first: [Float], _ second: [Float]) -> String? {
    guard first.count == second.count else { return "\(first.count) elements against \(second.count)" }
    guard let index = first.indices.first(where: { first[$0].bitPattern != second[$0].bitPattern }) else { return nil }
    return "element \(index): \(first[index]) against \(second[index])"
}

/// Describes the first parameter element whose bits differ between two models of one
/// architecture. Returns nil when none does.
private func firstWeightDifference(_ first: Sequential, _ second: Sequential) -> String? {
    guard first.parameters.count == second.parameters.count else {
        return "\(first.parameters.count) parameters against \(second.parameters.count)"
    }
    for (index, (a, b)) in zip(first.parameters, second.parameters).enumerated() {
        if let difference = firstBitDifference(a.value.scalars, b.value.scalars) {
            return "parameter \(index), \(difference)"
        }
    }
    return nil
}

/// Creates an empty folder under the system temporary folder.
private func makeTemporaryFolder() throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("NeuralKitSerializationTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}

/// Runs `body` and returns the file and reason of the `invalidData` error it throws, or nil for any other outcome.
private func invalidData(_ body: () throws -> Void) -> (file: String, reason: String)? {
    do {
        try body()
    } catch NeuralKitError.invalidData(let file, let reason) {
        return (file, reason)
    } catch {
        return nil
    }
    return nil
}

/// Runs `body` and returns the message of the `NeuralKitError` it throws, or nil for any other outcome.
private func neuralKitErrorMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
    } catch let error as NeuralKitError {
        return error.description
    } catch {
        return nil
    }
    return nil
}

/// A layer type that model files cannot describe.
private final class Identity: Layer {
    var name = ""
    var typeName: String { "Identity" }
    var parameters: [Parameter] { [] }
    func build(inputShape: [Int], generator: inout SeededGenerator) throws -> [Int] { inputShape }
    func forward(_ input: Tensor<Float>, training: Bool) -> Tensor<Float> { input }
    func backward(_ outputGradient: Tensor<Float>, needsInputGradient: Bool) -> Tensor<Float>? { outputGradient }
}

@Suite struct SerializationTests {
    // MARK: - Round trip and continued training

    @Test func roundTripPredictsIdentically() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = makeImageData()
        let model = makeConvModel()
        try model.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(learningRate: 0.01), metrics: ["accuracy"])
        try model.fit(x: data.x, y: data.y, batchSize: 16, epochs: 1, verbose: .silent)

        let url = folder.appendingPathComponent("model.nkmodel")
        try model.save(to: url)
        let loaded = try Sequential.load(from: url)

        #expect(firstBitDifference(try loaded.predict(data.x).scalars, try model.predict(data.x).scalars) == nil)
        #expect(firstWeightDifference(loaded, model) == nil)
        #expect(loaded.name == model.name)
        #expect(loaded.inputShape == [8, 8, 1])
        #expect(loaded.layerOutputShapes == model.layerOutputShapes)
        #expect(loaded.layers.map(\.name) == model.layers.map(\.name))
        #expect(loaded.layers.map(\.typeName) == model.layers.map(\.typeName))
        #expect(loaded.metricsNames == ["loss", "accuracy"])

        let convolution = try #require(loaded.layers[1] as? Conv2D)
        #expect(convolution.filters == 4)
        #expect(convolution.kernelSize == (3, 3))
        #expect(convolution.strides == (1, 1))
        #expect(convolution.padding == .valid)
        #expect(convolution.activation == .relu)
        #expect(convolution.useBias)
        let pooling = try #require(loaded.layers[2] as? MaxPooling2D)
        #expect(pooling.poolSize == (2, 2))
        #expect(pooling.strides == (2, 2))
        #expect((loaded.layers[3] as? Dropout)?.rate == 0.25)
        let dense = try #require(loaded.layers[5] as? Dense)
        #expect(dense.units == 10)
        #expect(dense.activation == .softmax)

        let loss = try #require(loaded.loss as? SparseCategoricalCrossentropy)
        #expect(loss.fromLogits == false)
        #expect(loss.ignoreClass == nil)
        #expect(loss.reduction == .sumOverBatchSize)
        let adam = try #require(loaded.optimizer as? Adam)
        let originalAdam = try #require(model.optimizer as? Adam)
        #expect(adam.learningRate.bitPattern == originalAdam.learningRate.bitPattern)
        #expect(adam.beta1 == originalAdam.beta1)
        #expect(adam.beta2 == originalAdam.beta2)
        #expect(adam.epsilon == originalAdam.epsilon)
        #expect(adam.iterations == 6)
        #expect(adam.iterations == originalAdam.iterations)
    }

    @Test func reloadedModelContinuesTrainingIdentically() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = makeImageData()
        let model = makeConvModel()
        try model.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(learningRate: 0.01), metrics: ["accuracy"])
        try model.fit(x: data.x, y: data.y, batchSize: 16, epochs: 1, verbose: .silent)

        let url = folder.appendingPathComponent("model.nkmodel")
        try model.save(to: url)
        let loaded = try Sequential.load(from: url)
        // A model with the same weights but fresh optimizer and generator states, to show
        // that the comparison below can fail.
        let weightsOnly = makeConvModel(seed: 99)
        try weightsOnly.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(learningRate: 0.01), metrics: ["accuracy"])
        try weightsOnly.loadWeights(from: url)
        let weightsAfterFirstEpoch = weightBits(model)

        let originalHistory = try model.fit(x: data.x, y: data.y, batchSize: 16, epochs: 1, verbose: .silent, shuffle: true)
        let loadedHistory = try loaded.fit(x: data.x, y: data.y, batchSize: 16, epochs: 1, verbose: .silent, shuffle: true)
        try weightsOnly.fit(x: data.x, y: data.y, batchSize: 16, epochs: 1, verbose: .silent, shuffle: true)

        #expect(weightBits(model) != weightsAfterFirstEpoch, "the second epoch changed no weight")
        #expect(firstWeightDifference(loaded, model) == nil)
        #expect(firstBitDifference(loadedHistory["loss"] ?? [], originalHistory["loss"] ?? []) == nil)
        #expect((loaded.optimizer as? Adam)?.iterations == 12)
        #expect(firstWeightDifference(weightsOnly, model) != nil)
        #expect(firstBitDifference(try loaded.predict(data.x).scalars, try model.predict(data.x).scalars) == nil)
    }

    @Test func sgdStateAndMetricObjectsRestored() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var generator = SeededGenerator(seed: 21)
        let x = Tensor(shape: [40, 6], scalars: (0..<240).map { _ in generator.nextUnitFloat() * 2 - 1 })
        let classes = (0..<40).map { _ in Int(generator.next() % 3) }
        let y = Tensor(shape: [40, 3], scalars: classes.flatMap { label in (0..<3).map { $0 == label ? Float(1) : 0 } })
        let model = Sequential([
            Dense(units: 8, activation: .tanh, name: "hidden"),
            Dropout(rate: 0.5),
            Dense(units: 3, activation: .softmax, useBias: false, name: "scores"),
        ], seed: 4, name: "classifier")
        try model.compile(
            loss: CategoricalCrossentropy(labelSmoothing: 0.1, reduction: .sum),
            optimizer: SGD(learningRate: 0.05, momentum: 0.9, nesterov: true),
            metrics: [CategoricalAccuracy(name: "acc"), BinaryAccuracy(threshold: 0.6, name: "binary")])
        try model.fit(x: x, y: y, batchSize: 8, epochs: 2, verbose: .silent)

        let url = folder.appendingPathComponent("classifier.nkmodel")
        try model.save(to: url)
        let loaded = try Sequential.load(from: url)

        #expect(loaded.name == "classifier")
        #expect(loaded.inputShape == [6])
        #expect(loaded.layers.map(\.name) == ["hidden", "dropout", "scores"])
        #expect((loaded.layers[2] as? Dense)?.useBias == false)
        #expect(loaded.metricsNames == ["loss", "acc", "binary"])
        #expect(loaded.metrics[0] is CategoricalAccuracy)
        #expect((loaded.metrics[1] as? BinaryAccuracy)?.threshold == 0.6)
        let loss = try #require(loaded.loss as? CategoricalCrossentropy)
        #expect(loss.labelSmoothing == 0.1)
        #expect(loss.reduction == .sum)
        let sgd = try #require(loaded.optimizer as? SGD)
        #expect(sgd.learningRate == 0.05)
        #expect(sgd.momentum == 0.9)
        #expect(sgd.nesterov)
        #expect(sgd.iterations == 10)

        try model.fit(x: x, y: y, batchSize: 8, epochs: 1, verbose: .silent)
        try loaded.fit(x: x, y: y, batchSize: 8, epochs: 1, verbose: .silent)
        #expect(firstWeightDifference(loaded, model) == nil)
    }

    @Test func unbuiltModelBuildsSameWeights() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = Sequential([Dense(units: 5, activation: .relu), Dropout(rate: 0.2), Dense(units: 2)], seed: 8)
        let url = folder.appendingPathComponent("unbuilt.nkmodel")
        try model.save(to: url)
        let loaded = try Sequential.load(from: url)

        #expect(loaded.inputShape == nil)
        #expect(loaded.loss == nil)
        try model.build(inputShape: [3])
        try loaded.build(inputShape: [3])
        #expect(firstWeightDifference(loaded, model) == nil)
    }

    // MARK: - File layout

    @Test func fileStartsWithDocumentedHeader() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = makeConvModel()
        try model.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam())
        let modelURL = folder.appendingPathComponent("model.nkmodel")
        let weightsURL = folder.appendingPathComponent("model.nkweights")
        try model.save(to: modelURL)
        try model.saveWeights(to: weightsURL)
        let bytes = [UInt8](try Data(contentsOf: modelURL))
        let weightsBytes = [UInt8](try Data(contentsOf: weightsURL))
        try model.save(to: modelURL)
        #expect([UInt8](try Data(contentsOf: modelURL)) == bytes, "saving the same model twice gave different bytes")

        func integer(_ bytes: [UInt8], at offset: Int, size: Int) -> Int {
            (0..<size).reversed().reduce(0) { $0 << 8 | Int(bytes[offset + $1]) }
        }
        #expect(Array(bytes[0..<8]) == [0x89, 0x4E, 0x4B, 0x4D, 0x0D, 0x0A, 0x1A, 0x0A])
        #expect(integer(bytes, at: 8, size: 4) == 1)
        #expect(integer(bytes, at: 12, size: 4) == 0)
        #expect(integer(weightsBytes, at: 12, size: 4) == 1)
        let headerLength = integer(bytes, at: 16, size: 8)
        let dataLength = integer(bytes, at: 24, size: 8)
        #expect(headerLength % 8 == 0)
        #expect(bytes.count == 32 + headerLength + dataLength + 4)
        // Conv2D kernel and bias, Dense kernel and bias, each with empty Adam slots before the first update.
        #expect(dataLength == 4 * (36 + 4 + 360 + 10))

        let header = try #require(
            try JSONSerialization.jsonObject(with: Data(bytes[32..<(32 + headerLength)])) as? [String: Any])
        #expect(header["producer"] as? String == "NeuralKit")
        let modelRecord = try #require(header["model"] as? [String: Any])
        #expect(modelRecord["inputShape"] as? [Int] == [8, 8, 1])
        let layers = try #require(modelRecord["layers"] as? [[String: Any]])
        #expect(layers.map { $0["type"] as? String } == ["InputLayer", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense"])
        let compile = try #require(header["compile"] as? [String: Any])
        #expect((compile["optimizer"] as? [String: Any])?["type"] as? String == "Adam")
    }

    // MARK: - Rejected files

    @Test func truncatedFileRejected() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkmodel")
        try makeConvModel().save(to: url)
        let bytes = try Data(contentsOf: url)

        for keptCount in [bytes.count - 1, bytes.count - 100, 40, 20, 0] {
            try bytes.prefix(keptCount).write(to: url)
            let error = invalidData { _ = try Sequential.load(from: url) }
            #expect(error?.file == url.path, "kept \(keptCount) bytes")
            #expect(error?.reason.contains("truncated") == true, "kept \(keptCount) bytes: \(error?.reason ?? "no error")")
        }
    }

    @Test func flippedByteRejectedByChecksum() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkmodel")
        try makeConvModel().save(to: url)
        let original = try Data(contentsOf: url)

        // One byte in the JSON header, one in the tensor data, one in the stored checksum.
        for offset in [40, original.count - 30, original.count - 1] {
            var corrupted = original
            corrupted[offset] ^= 0x10
            try corrupted.write(to: url)
            let error = invalidData { _ = try Sequential.load(from: url) }
            #expect(error?.file == url.path, "byte \(offset)")
            #expect(error?.reason.contains("checksum mismatch") == true, "byte \(offset): \(error?.reason ?? "no error")")
        }
    }

    @Test func wrongMagicRejected() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkmodel")
        try makeConvModel().save(to: url)
        var bytes = try Data(contentsOf: url)
        bytes[1] = UInt8(ascii: "X")
        try bytes.write(to: url)
        let textURL = folder.appendingPathComponent("notes.txt")
        try Data("not a model\n".utf8).write(to: textURL)

        let error = invalidData { _ = try Sequential.load(from: url) }
        #expect(error?.file == url.path)
        #expect(error?.reason.contains("wrong magic bytes") == true, "\(error?.reason ?? "no error")")
        let textError = invalidData { _ = try Sequential.load(from: textURL) }
        #expect(textError?.reason.contains("wrong magic bytes") == true, "\(textError?.reason ?? "no error")")
    }

    @Test func futureVersionRejected() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkmodel")
        try makeConvModel().save(to: url)
        var bytes = try Data(contentsOf: url)
        bytes[8] = 2
        try bytes.write(to: url)

        let error = invalidData { _ = try Sequential.load(from: url) }
        #expect(error?.file == url.path)
        #expect(error?.reason.contains("format version 2 is newer than version 1") == true, "\(error?.reason ?? "no error")")
        #expect(error?.reason.contains("may instead be corrupt") == true, "\(error?.reason ?? "no error")")
    }

    @Test func futureVersionWithValidChecksumNamesNewerFormat() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkmodel")
        try makeConvModel().save(to: url)
        var bytes = [UInt8](try Data(contentsOf: url))
        bytes[8] = 2
        // Rewrite the trailer as a newer writer would, so only the version is unknown.
        let checksum = ModelFileContainer.crc32(of: bytes[..<(bytes.count - 4)])
        for index in 0..<4 { bytes[bytes.count - 4 + index] = UInt8(truncatingIfNeeded: checksum >> (8 * index)) }
        try Data(bytes).write(to: url)

        let error = invalidData { _ = try Sequential.load(from: url) }
        #expect(error?.reason.contains("format version 2 is newer than version 1") == true, "\(error?.reason ?? "no error")")
        #expect(error?.reason.contains("corrupt") == false, "\(error?.reason ?? "no error")")
    }

    @Test func missingFileRejected() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("missing-\(UUID().uuidString).nkmodel")
        let error = invalidData { _ = try Sequential.load(from: url) }
        #expect(error?.file == url.path)
        #expect(error?.reason == "file not found")
    }

    @Test func generatorStateNeedsLowercaseHexadecimal() {
        let valid = ["b071a4f1b3e6e028", "1d387874ab1451d2", "80da027c220bdd9d", "237c223490d2c6ed"]
        #expect(SeededGenerator(stateRecord: valid)?.stateRecord == valid)
        let uppercase = ["B071A4F1B3E6E028"] + valid.dropFirst()
        #expect(SeededGenerator(stateRecord: uppercase) == nil)
        let signed = ["+071a4f1b3e6e028"] + valid.dropFirst()
        #expect(SeededGenerator(stateRecord: signed) == nil)
        #expect(SeededGenerator(stateRecord: Array(valid.dropFirst())) == nil)
        #expect(SeededGenerator(stateRecord: Array(repeating: "0000000000000000", count: 4)) == nil)
    }

    @Test func folderRejected() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let error = invalidData { _ = try Sequential.load(from: folder) }
        #expect(error?.file == folder.path)
        #expect(error?.reason.hasPrefix("is a folder, not a model file") == true, "\(error?.reason ?? "no error")")
    }

    @Test func weightsOnlyFileRejectedByLoad() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkweights")
        try makeConvModel().saveWeights(to: url)

        let error = invalidData { _ = try Sequential.load(from: url) }
        #expect(error?.file == url.path)
        #expect(error?.reason.contains("contains weights only") == true, "\(error?.reason ?? "no error")")
    }

    // MARK: - Weights only

    @Test func loadWeightsRestoresPredictions() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = makeImageData(count: 20)
        let source = makeConvModel(seed: 1)
        try source.build(inputShape: [8, 8, 1])
        let url = folder.appendingPathComponent("model.nkweights")
        try source.saveWeights(to: url)

        let target = makeConvModel(seed: 2)
        try target.build(inputShape: [8, 8, 1])
        #expect(firstWeightDifference(target, source) != nil)
        try target.loadWeights(from: url)
        #expect(firstWeightDifference(target, source) == nil)
        #expect(firstBitDifference(try target.predict(data.x).scalars, try source.predict(data.x).scalars) == nil)

        // An unbuilt model without an Input layer is built from the file's input shape.
        let unbuilt = Sequential([Conv2D(filters: 4, kernelSize: 3, activation: .relu), MaxPooling2D(poolSize: 2),
                                  Dropout(rate: 0.25), Flatten(), Dense(units: 10, activation: .softmax)])
        try unbuilt.loadWeights(from: url)
        #expect(unbuilt.inputShape == [8, 8, 1])
        #expect(firstWeightDifference(unbuilt, source) == nil)
    }

    @Test func loadWeightsShapeMismatchNamesLayer() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkweights")
        let source = makeConvModel(denseUnits: 10)
        try source.build(inputShape: [8, 8, 1])
        try source.saveWeights(to: url)

        let target = makeConvModel(denseUnits: 12)
        try target.build(inputShape: [8, 8, 1])
        let before = weightBits(target)
        let message = neuralKitErrorMessage { try target.loadWeights(from: url) }
        #expect(message?.contains("layer 'dense' (Dense)") == true, "\(message ?? "no error")")
        #expect(message?.contains("kernel of shape (36, 12)") == true, "\(message ?? "no error")")
        #expect(message?.contains("stores shape (36, 10)") == true, "\(message ?? "no error")")
        #expect(message?.contains(url.path) == true)
        #expect(weightBits(target) == before)
    }

    @Test func loadWeightsLayerCountMismatch() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkweights")
        let source = Sequential([Input(shape: [4]), Dense(units: 3)])
        try source.build(inputShape: [4])
        try source.saveWeights(to: url)

        let deeper = Sequential([Input(shape: [4]), Dense(units: 3), Dense(units: 2, name: "extra")])
        let message = neuralKitErrorMessage { try deeper.loadWeights(from: url) }
        #expect(message?.contains("layer 'extra' (Dense) has no counterpart in the file") == true, "\(message ?? "no error")")

        let convolutional = makeConvModel()
        let typeMessage = neuralKitErrorMessage { try convolutional.loadWeights(from: url) }
        #expect(typeMessage?.contains("layer 'conv2d' is a Conv2D") == true, "\(typeMessage ?? "no error")")
    }

    // MARK: - Atomic writes

    @Test func rejectedSaveKeepsOldFile() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkmodel")
        try makeConvModel().save(to: url)
        let original = try Data(contentsOf: url)

        let unsupported = Sequential([Input(shape: [4]), Identity(), Dense(units: 2)])
        let message = neuralKitErrorMessage { try unsupported.save(to: url) }
        #expect(message?.contains("has type Identity") == true, "\(message ?? "no error")")
        #expect(try Data(contentsOf: url) == original)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["model.nkmodel"])
    }

    @Test func failedRenameLeavesNoTemporaryFile() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // A non-empty folder at the target path makes the final rename fail after the
        // temporary file was written in full.
        let target = folder.appendingPathComponent("model.nkmodel")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: false)
        try Data("keep".utf8).write(to: target.appendingPathComponent("inner.txt"))

        let error = invalidData { try makeConvModel().save(to: target) }
        #expect(error?.file == target.path)
        #expect(error?.reason.contains("renaming") == true, "\(error?.reason ?? "no error")")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["model.nkmodel"])
        #expect(try Data(contentsOf: target.appendingPathComponent("inner.txt")) == Data("keep".utf8))
    }

    @Test(.enabled(if: getuid() != 0, "root can write into read-only folders"))
    func readOnlyFolderKeepsOldFile() throws {
        let folder = try makeTemporaryFolder()
        defer {
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
            try? FileManager.default.removeItem(at: folder)
        }
        let url = folder.appendingPathComponent("model.nkmodel")
        try makeConvModel(seed: 1).save(to: url)
        let original = try Data(contentsOf: url)
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: folder.path)

        let error = invalidData { try makeConvModel(seed: 2).save(to: url) }
        #expect(error?.file == url.path)
        #expect(error?.reason.contains("creating the temporary file") == true, "\(error?.reason ?? "no error")")
        #expect(try Data(contentsOf: url) == original)
    }

    @Test func concurrentLoadsSeeCompleteFiles() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.nkmodel")
        let first = makeConvModel(seed: 1)
        let second = makeConvModel(seed: 2)
        try first.build(inputShape: [8, 8, 1])
        try second.build(inputShape: [8, 8, 1])
        try first.save(to: url)
        let expectedWeights = [weightBits(first), weightBits(second)]

        let saves = 40
        let writerDone = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var writerError: (any Error)?
        Thread.detachNewThread {
            do {
                for index in 0..<saves { try (index % 2 == 0 ? second : first).save(to: url) }
            } catch {
                writerError = error
            }
            writerDone.signal()
        }
        var loadFailures: [String] = []
        var unexpectedWeights = 0
        for _ in 0..<saves {
            do {
                let loaded = try Sequential.load(from: url)
                if !expectedWeights.contains(weightBits(loaded)) { unexpectedWeights += 1 }
            } catch {
                loadFailures.append("\(error)")
            }
        }
        writerDone.wait()

        #expect(writerError == nil, "\(writerError.map { "\($0)" } ?? "")")
        #expect(loadFailures.isEmpty, "\(loadFailures.prefix(3))")
        #expect(unexpectedWeights == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["model.nkmodel"])
    }

    @Test func saveThroughSymbolicLinkKeepsLink() throws {
        let folder = try makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let realURL = folder.appendingPathComponent("real.nkmodel")
        let linkURL = folder.appendingPathComponent("link.nkmodel")
        try makeConvModel(seed: 1).save(to: realURL)
        try FileManager.default.createSymbolicLink(at: linkURL, withDestinationURL: realURL)

        let model = makeConvModel(seed: 2)
        try model.build(inputShape: [8, 8, 1])
        try model.save(to: linkURL)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: linkURL.path) == realURL.path)
        #expect(firstWeightDifference(try Sequential.load(from: realURL), model) == nil)
    }
}
