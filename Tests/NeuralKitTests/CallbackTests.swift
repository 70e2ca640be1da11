import Foundation
import Testing
@testable import NeuralKit

/// The tests of callbacks, `initialEpoch`, interruption and resuming, in the library
/// and in `neuralkit mnist`.
@Suite struct CallbackTests {}

/// A small classifier with dropout, so that resumed training also depends on the
/// restored mask generator.
private func makeSmallClassifier(seed: UInt64 = 3) throws -> Sequential {
    let model = Sequential(
        [Input(shape: [4]), Dense(units: 8, activation: .relu), Dropout(rate: 0.25), Dense(units: 3, activation: .softmax)],
        seed: seed)
    try model.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(learningRate: 0.01), metrics: ["accuracy"])
    return model
}

/// Samples whose class is the index of the largest of the first three features.
private func makeSmallDataset(count: Int = 300, seed: UInt64 = 9) -> (x: Tensor<Float>, y: Tensor<Int32>) {
    let x = randomTensor([count, 4], seed: seed)
    let labels = (0..<count).map { row -> Int32 in
        let features = Array(x.scalars[(row * 4)..<(row * 4 + 3)])
        return Int32(features.firstIndex(of: features.max()!)!)
    }
    return (x, Tensor<Int32>(labels))
}

/// Records every hook call as a line such as `epochEnd 1 [accuracy, loss, val_accuracy, val_loss]`.
private final class RecordingCallback: Callback {
    var events: [String] = []
    var epochLogs: [[String: Float]] = []
    var batchLogs: [[String: Float]] = []
    /// Runs after each `batchEnd` with the epoch and batch, to script stops and interruptions.
    var onBatchEnd: ((Int, Int) -> Void)?
    private var epoch = 0

    func setModel(_ model: Sequential) { events.append("setModel") }
    func trainBegin() throws { events.append("trainBegin") }
    func trainEnd(logs: [String: Float]) throws { events.append("trainEnd \(logs.keys.sorted())") }
    func epochBegin(_ epoch: Int) throws {
        self.epoch = epoch
        events.append("epochBegin \(epoch)")
    }
    func epochEnd(_ epoch: Int, logs: [String: Float]) throws {
        events.append("epochEnd \(epoch) \(logs.keys.sorted())")
        epochLogs.append(logs)
    }
    func batchBegin(_ batch: Int) throws { events.append("batchBegin \(batch)") }
    func batchEnd(_ batch: Int, logs: [String: Float]) throws {
        events.append("batchEnd \(batch)")
        batchLogs.append(logs)
        onBatchEnd?(epoch, batch)
    }
    func trainInterrupted(epoch: Int, completedBatches: Int, logs: [String: Float]) throws {
        events.append("trainInterrupted \(epoch) \(completedBatches)")
    }
}

/// Drives `callback` through the epochs of a scripted quantity as `fit` would, and
/// returns the number of epochs run before it stopped training. `prepareEpoch` runs
/// before each epoch's end, for example to set the weights that epoch leaves.
private func runScriptedEpochs(
    _ callback: any Callback, model: Sequential, key: String = "val_loss", values: [Float],
    prepareEpoch: (Int) -> Void = { _ in }
) throws -> Int {
    model.stopTraining = false
    callback.setModel(model)
    try callback.trainBegin()
    var epochsRun = 0
    var lastLogs: [String: Float] = [:]
    for (epoch, value) in values.enumerated() {
        try callback.epochBegin(epoch)
        prepareEpoch(epoch)
        lastLogs = ["loss": 1, key: value]
        try callback.epochEnd(epoch, logs: lastLogs)
        epochsRun += 1
        if model.stopTraining { break }
    }
    try callback.trainEnd(logs: lastLogs)
    return epochsRun
}

/// Sets every parameter of `model` to `value`.
private func fillParameters(_ model: Sequential, with value: Float) {
    for parameter in model.parameters {
        parameter.value = Tensor(shape: parameter.value.shape, scalars: [Float](repeating: value, count: parameter.value.count))
    }
}

private func fileNames(in folder: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }.sorted()
}

private func csvLines(_ url: URL) throws -> [String] {
    try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
}

extension CallbackTests {
    @Suite struct HookTests {
        @Test func hooksRunInKerasOrder() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 50)
            let recorder = RecordingCallback()
            try model.fit(x: data.x, y: data.y, batchSize: 20, epochs: 2, verbose: .silent, callbacks: [recorder], validationSplit: 0.2)

            let epochKeys = "[\"accuracy\", \"loss\", \"val_accuracy\", \"val_loss\"]"
            var expected = ["setModel", "trainBegin"]
            for epoch in 0..<2 {
                expected.append("epochBegin \(epoch)")
                expected += ["batchBegin 0", "batchEnd 0", "batchBegin 1", "batchEnd 1"]
                expected.append("epochEnd \(epoch) \(epochKeys)")
            }
            expected.append("trainEnd \(epochKeys)")
            #expect(recorder.events == expected)
            #expect(recorder.batchLogs.first.map { $0.keys.sorted() } == ["accuracy", "loss"])
        }

        @Test func epochLogsMatchHistory() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 60)
            let recorder = RecordingCallback()
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 16, epochs: 3, verbose: .silent, callbacks: [recorder], validationSplit: 0.25)
            for key in history.keys {
                #expect(recorder.epochLogs.map { $0[key] } == history[key]!.map { Optional($0) }, "key \(key)")
            }
        }

        @Test func stopTrainingEndsEpochEarly() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 100)
            let recorder = RecordingCallback()
            recorder.onBatchEnd = { epoch, batch in
                if epoch == 1 && batch == 1 { model.stopTraining = true }
            }
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 10, epochs: 5, verbose: .silent, callbacks: [recorder], validationSplit: 0.2)

            // As in Keras, the stopped epoch still validates and reaches epochEnd.
            #expect(history.epoch == [0, 1])
            #expect(recorder.events.filter { $0.hasPrefix("batchEnd") }.count == 8 + 2)
            #expect(recorder.epochLogs.count == 2)
            #expect(recorder.epochLogs.last?["val_loss"] != nil)
            #expect(model.optimizer?.iterations == 10)
        }

        @Test func fitClearsStopTraining() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            model.stopTraining = true
            let history = try model.fit(x: data.x, y: data.y, batchSize: 10, epochs: 2, verbose: .silent)
            #expect(history.epoch == [0, 1])
        }

        @Test func initialEpochNumbersHistory() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 40)
            let recorder = RecordingCallback()
            var printed = ""
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 20, epochs: 5, verbose: .epochLines, callbacks: [recorder], initialEpoch: 2,
                output: { printed += $0 })

            #expect(history.epoch == [2, 3, 4])
            #expect(recorder.events.filter { $0.hasPrefix("epochBegin") } == ["epochBegin 2", "epochBegin 3", "epochBegin 4"])
            let epochLines = printed.split(separator: "\n").filter { $0.hasPrefix("Epoch ") }
            #expect(epochLines == ["Epoch 3/5", "Epoch 4/5", "Epoch 5/5"])
        }

        @Test func initialEpochAtEpochsTrainsNothing() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            let history = try model.fit(x: data.x, y: data.y, epochs: 3, verbose: .silent, initialEpoch: 3)
            #expect(history.epoch.isEmpty)
            #expect(model.optimizer?.iterations == 0)
        }

        @Test func negativeInitialEpochRejected() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            let message = errorMessage { try model.fit(x: data.x, y: data.y, verbose: .silent, initialEpoch: -1) }
            #expect(message == "initialEpoch must be non-negative, got -1")
        }

        @Test func callbackErrorStopsFit() throws {
            final class FailingCallback: Callback {
                func epochEnd(_ epoch: Int, logs: [String: Float]) throws {
                    throw NeuralKitError.invalidArgument("scripted failure in epoch \(epoch)")
                }
            }
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            let message = errorMessage {
                try model.fit(x: data.x, y: data.y, batchSize: 10, epochs: 3, verbose: .silent, callbacks: [FailingCallback()])
            }
            #expect(message == "scripted failure in epoch 0")
            #expect(model.optimizer?.iterations == 2)
        }
    }
}

extension CallbackTests {
    @Suite struct EarlyStoppingTests {
        @Test func stopsAfterPatienceEpochs() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(patience: 2)
            let epochs = try runScriptedEpochs(earlyStopping, model: model, values: [1.0, 0.9, 0.95, 0.93, 0.92, 0.5])
            #expect(epochs == 4)
            #expect(earlyStopping.stoppedEpoch == 3)
            #expect(earlyStopping.best == 0.9)
            #expect(earlyStopping.bestEpoch == 1)
        }

        @Test func zeroPatienceStopsAtFirstWorseEpoch() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(patience: 0)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [1.0, 0.8, 0.8, 0.1]) == 3)
        }

        @Test func neverStopsAtEpochZero() throws {
            // Keras checks `epoch > 0`, so even patience 0 cannot stop at the end of epoch 0.
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(monitor: "val_loss", patience: 0)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [.nan, 1.0, 2.0]) == 3)
            #expect(earlyStopping.stoppedEpoch == 2)
        }

        @Test func minDeltaIgnoresSmallGains() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(minDelta: -0.1, patience: 1)
            #expect(earlyStopping.minDelta == 0.1)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [1.0, 0.95, 0.5, 0.4]) == 2)
            let lenient = try EarlyStopping(minDelta: 0.01, patience: 1)
            #expect(try runScriptedEpochs(lenient, model: model, values: [1.0, 0.95, 0.9, 0.85]) == 4)
        }

        @Test func accuracyMaximizedInAutoMode() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(monitor: "val_accuracy", patience: 0)
            #expect(try runScriptedEpochs(earlyStopping, model: model, key: "val_accuracy", values: [0.5, 0.6, 0.55, 0.9]) == 3)
            #expect(earlyStopping.best == 0.6)
        }

        @Test func modeOverridesName() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(monitor: "val_loss", patience: 0, mode: .max)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [0.5, 0.6, 0.55]) == 3)
            let unknownName = try EarlyStopping(monitor: "val_auc", patience: 0)
            #expect(try runScriptedEpochs(unknownName, model: model, key: "val_auc", values: [0.5, 0.6, 0.55]) == 3)
            let minimized = try EarlyStopping(monitor: "val_error", patience: 0)
            #expect(try runScriptedEpochs(minimized, model: model, key: "val_error", values: [0.5, 0.4, 0.45]) == 3)
        }

        @Test func baselineNeverBeatenStopsAfterPatience() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(patience: 2, baseline: 0.5)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [0.8, 0.9, 0.9, 0.9]) == 2)
            #expect(earlyStopping.best == 0.8)
        }

        @Test func baselineBeatenResetsPatience() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(patience: 2, baseline: 0.5)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [0.8, 0.4, 0.45, 0.46, 0.47, 0.1]) == 4)
            #expect(earlyStopping.stoppedEpoch == 3)
        }

        @Test func startFromEpochSkipsWarmUp() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(patience: 0, startFromEpoch: 2)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [0.1, 0.1, 1.0, 1.1, 0.5]) == 4)
            #expect(earlyStopping.bestEpoch == 2)
        }

        @Test func restoresBestWeightsAfterStop() throws {
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let earlyStopping = try EarlyStopping(patience: 2, restoreBestWeights: true)
            let epochs = try runScriptedEpochs(earlyStopping, model: model, values: [1.0, 0.5, 0.7, 0.8, 0.1]) { epoch in
                fillParameters(model, with: Float(epoch))
            }
            #expect(epochs == 4)
            #expect(model.parameters.allSatisfy { $0.value.scalars.allSatisfy { $0 == 1 } })
        }

        @Test func restoresBestWeightsWithoutStop() throws {
            // Keras 3 restores at the end of training even when patience never ran out.
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let earlyStopping = try EarlyStopping(patience: 5, restoreBestWeights: true)
            let epochs = try runScriptedEpochs(earlyStopping, model: model, values: [1.0, 0.5, 0.7]) { epoch in
                fillParameters(model, with: Float(epoch))
            }
            #expect(epochs == 3)
            #expect(earlyStopping.stoppedEpoch == nil)
            #expect(model.parameters.allSatisfy { $0.value.scalars.allSatisfy { $0 == 1 } })
        }

        @Test func keepsLastWeightsWithoutRestore() throws {
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let earlyStopping = try EarlyStopping(patience: 1)
            _ = try runScriptedEpochs(earlyStopping, model: model, values: [1.0, 0.5, 0.7]) { epoch in
                fillParameters(model, with: Float(epoch))
            }
            #expect(model.parameters.allSatisfy { $0.value.scalars.allSatisfy { $0 == 2 } })
        }

        @Test func missingMonitorNeverStops() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(monitor: "val_loss", patience: 0)
            #expect(try runScriptedEpochs(earlyStopping, model: model, key: "loss_only", values: [1, 2, 3]) == 3)
            #expect(earlyStopping.best == nil)
        }

        @Test func instanceReusableAcrossFits() throws {
            let model = try makeSmallClassifier()
            let earlyStopping = try EarlyStopping(patience: 0)
            _ = try runScriptedEpochs(earlyStopping, model: model, values: [0.1, 0.2])
            #expect(earlyStopping.stoppedEpoch == 1)
            #expect(try runScriptedEpochs(earlyStopping, model: model, values: [0.9, 0.8, 0.7]) == 3)
            #expect(earlyStopping.stoppedEpoch == nil)
        }

        @Test func stopsRealFit() throws {
            // With a huge minDelta no epoch after the first improves, so patience 1 ends
            // training after epoch 1.
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 40)
            let earlyStopping = try EarlyStopping(monitor: "loss", minDelta: 1e9, patience: 1)
            let history = try model.fit(x: data.x, y: data.y, batchSize: 20, epochs: 10, verbose: .silent, callbacks: [earlyStopping])
            #expect(history.epoch == [0, 1])
        }

        @Test func invalidArgumentsRejected() {
            #expect(errorMessage { _ = try EarlyStopping(patience: -1) }
                == "EarlyStopping patience must be a non-negative number of epochs, got -1")
            #expect(errorMessage { _ = try EarlyStopping(startFromEpoch: -2) } == "EarlyStopping startFromEpoch must be non-negative, got -2")
            #expect(errorMessage { _ = try EarlyStopping(minDelta: .nan) } == "EarlyStopping minDelta must be a finite number, got nan")
            #expect(errorMessage { _ = try EarlyStopping(baseline: .infinity) }
                == "EarlyStopping baseline must be a finite number or nil, got inf")
        }
    }
}

extension CallbackTests {
    @Suite struct ModelCheckpointTests {
        @Test func fileNamesUseEpochAndLogs() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 50)
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/model-{epoch:02d}-{val_loss:.4f}.nk")
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 10, epochs: 3, verbose: .silent, callbacks: [checkpoint], validationSplit: 0.2)

            let expected = (0..<3).map { String(format: "model-%02d-%.4f.nk", $0 + 1, Double(history["val_loss"]![$0])) }
            #expect(try fileNames(in: folder) == expected.sorted())
            let last = try Sequential.load(from: folder.appendingPathComponent(expected[2]))
            #expect(last.parameters.map(\.value) == model.parameters.map(\.value))
            #expect(last.optimizer?.iterations == 12)
            #expect(checkpoint.lastSavedURL?.lastPathComponent == expected[2])
        }

        @Test func formatSpecsFollowPython() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let cases: [(pattern: String, logs: [String: Float], epoch: Int, name: String)] = [
                ("e{epoch}.nk", [:], 6, "e7.nk"),
                ("e{epoch:03d}.nk", [:], 6, "e007.nk"),
                ("e{epoch:>4}.nk", [:], 0, "e   1.nk"),
                ("e{epoch:<3d}x.nk", [:], 0, "e1  x.nk"),
                ("l{loss:.2e}.nk", ["loss": 0.000123], 0, "l1.23e-04.nk"),
                ("l{loss:+.1f}.nk", ["loss": 2.25], 0, "l+2.2.nk"),
                ("a{acc:.1%}.nk", ["acc": 0.5], 0, "a50.0%.nk"),
                ("l{loss}.nk", ["loss": 0.5], 0, "l0.5.nk"),
                ("l{loss:08.3f}.nk", ["loss": -1.5], 0, "l-001.500.nk"),
                ("{{literal}}-{epoch}.nk", [:], 1, "{literal}-2.nk"),
            ]
            for testCase in cases {
                let checkpoint = try ModelCheckpoint(filepath: folder.path + "/" + testCase.pattern)
                checkpoint.setModel(model)
                try checkpoint.epochEnd(testCase.epoch, logs: testCase.logs)
                #expect(checkpoint.lastSavedURL?.lastPathComponent == testCase.name, "pattern \(testCase.pattern)")
            }
        }

        @Test func invalidPatternsRejected() {
            let cases: [(String, String)] = [
                ("ckpt-{epoch.nk", "unmatched '{'"),
                ("ckpt-epoch}.nk", "unmatched '}'"),
                ("ckpt-{}.nk", "a field needs a name"),
                ("ckpt-{epoch:q}.nk", "unsupported format code 'q'"),
                ("ckpt-{epoch!r}.nk", "conversion, attribute or index"),
                ("ckpt-{epoch:.2d}.nk", "precision is not allowed with format code 'd'"),
            ]
            for (pattern, reason) in cases {
                let message = errorMessage { _ = try ModelCheckpoint(filepath: pattern) }
                #expect(message?.contains("invalid filepath pattern '\(pattern)'") == true, "\(message ?? "no error")")
                #expect(message?.contains(reason) == true, "\(message ?? "no error")")
            }
            #expect(errorMessage { _ = try ModelCheckpoint(filepath: "") }?.contains("filepath is empty") == true)
        }

        @Test func missingLogKeyFailsFit() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/m-{val_loss:.2f}.nk")
            let message = errorMessage {
                try model.fit(x: data.x, y: data.y, batchSize: 10, epochs: 1, verbose: .silent, callbacks: [checkpoint])
            }
            #expect(message?.contains("uses {val_loss}, but the available fields are accuracy, epoch, loss") == true, "\(message ?? "no error")")
        }

        @Test func floatWithIntegerFormatRejected() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/m-{loss:d}.nk")
            checkpoint.setModel(model)
            let message = errorMessage { try checkpoint.epochEnd(0, logs: ["loss": 1]) }
            #expect(message?.contains("format code 'd' in {loss} needs an integer") == true, "\(message ?? "no error")")
        }

        @Test func saveBestOnlyKeepsImprovements() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/best-{epoch}.nk", saveBestOnly: true)
            _ = try runScriptedEpochs(checkpoint, model: model, values: [1.0, 0.8, 0.9, 0.7, 0.7])
            #expect(try fileNames(in: folder) == ["best-1.nk", "best-2.nk", "best-4.nk"])
            #expect(checkpoint.best == 0.7)
        }

        @Test func saveBestOnlyOverwritesOneFile() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/best.nk", monitor: "val_accuracy", saveBestOnly: true)
            _ = try runScriptedEpochs(checkpoint, model: model, key: "val_accuracy", values: [0.5, 0.7, 0.6]) { epoch in
                fillParameters(model, with: Float(epoch))
            }
            let best = try Sequential.load(from: folder.appendingPathComponent("best.nk"))
            #expect(best.parameters.allSatisfy { $0.value.scalars.allSatisfy { $0 == 1 } })
        }

        @Test func initialThresholdMustBeBeaten() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(
                filepath: folder.path + "/best-{epoch}.nk", saveBestOnly: true, mode: .min, initialValueThreshold: 0.6)
            _ = try runScriptedEpochs(checkpoint, model: model, values: [0.8, 0.7, 0.5])
            #expect(try fileNames(in: folder) == ["best-3.nk"])
        }

        @Test func missingMonitorSavesEveryEpoch() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/m-{epoch}.nk", saveBestOnly: true)
            _ = try runScriptedEpochs(checkpoint, model: model, key: "other", values: [1, 2])
            #expect(try fileNames(in: folder) == ["m-1.nk", "m-2.nk"])
            #expect(checkpoint.best == nil)
        }

        @Test func weightsOnlyFilesLoadIntoModel() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/w.nk", saveWeightsOnly: true)
            _ = try runScriptedEpochs(checkpoint, model: model, values: [1]) { _ in fillParameters(model, with: 0.25) }

            let url = folder.appendingPathComponent("w.nk")
            let message = errorMessage { _ = try Sequential.load(from: url) }
            #expect(message?.contains("contains weights only") == true, "\(message ?? "no error")")
            let other = try makeSmallClassifier(seed: 99)
            try other.loadWeights(from: url)
            #expect(other.parameters.allSatisfy { $0.value.scalars.allSatisfy { $0 == 0.25 } })
        }

        @Test func createsMissingFolders() throws {
            let folder = try temporaryFolder().appendingPathComponent("a/b")
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/m.nk")
            _ = try runScriptedEpochs(checkpoint, model: model, values: [1])
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("m.nk").path))
        }

        @Test func folderAsFilepathRejected() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            let checkpoint = try ModelCheckpoint(filepath: folder.path)
            let message = errorMessage { _ = try runScriptedEpochs(checkpoint, model: model, values: [1]) }
            #expect(message?.contains("is an existing folder") == true, "\(message ?? "no error")")
        }

        @Test func interruptionOptionsChecked() {
            let bestOnly = errorMessage { _ = try ModelCheckpoint(filepath: "m.nk", saveBestOnly: true, saveOnInterruption: true) }
            #expect(bestOnly?.contains("saveOnInterruption cannot be combined with saveBestOnly") == true, "\(bestOnly ?? "no error")")
            let logField = errorMessage { _ = try ModelCheckpoint(filepath: "m-{val_loss}.nk", saveOnInterruption: true) }
            #expect(logField?.contains("uses {val_loss}, but with saveOnInterruption it may contain only {epoch}") == true)
        }
    }
}

extension CallbackTests {
    @Suite struct CSVLoggerTests {
        @Test func headerAndRowsFollowKeras() throws {
            let url = try temporaryFolder().appendingPathComponent("history.csv")
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 50)
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 10, epochs: 2, verbose: .silent, callbacks: [try CSVLogger(filename: url)],
                validationSplit: 0.2)

            let lines = try csvLines(url)
            #expect(lines.count == 3)
            #expect(lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss")
            for epoch in 0..<2 {
                let fields = lines[epoch + 1].split(separator: ",").map(String.init)
                #expect(fields[0] == "\(epoch)")
                let keys = ["accuracy", "loss", "val_accuracy", "val_loss"]
                for (index, key) in keys.enumerated() {
                    #expect(Float(fields[index + 1]) == history[key]![epoch], "epoch \(epoch) \(key)")
                }
            }
        }

        @Test func appendContinuesFile() throws {
            let url = try temporaryFolder().appendingPathComponent("history.csv")
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 40)
            try model.fit(x: data.x, y: data.y, batchSize: 20, epochs: 2, verbose: .silent, callbacks: [try CSVLogger(filename: url)])
            try model.fit(
                x: data.x, y: data.y, batchSize: 20, epochs: 4, verbose: .silent,
                callbacks: [try CSVLogger(filename: url, append: true)], initialEpoch: 2)

            let lines = try csvLines(url)
            #expect(lines.count == 5)
            #expect(lines.filter { $0.hasPrefix("epoch,") }.count == 1)
            #expect(lines.dropFirst().map { $0.split(separator: ",")[0] } == ["0", "1", "2", "3"])
        }

        @Test func withoutAppendReplacesFile() throws {
            let url = try temporaryFolder().appendingPathComponent("history.csv")
            try "old,contents\n1,2\n".write(to: url, atomically: true, encoding: .utf8)
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            try model.fit(x: data.x, y: data.y, batchSize: 20, epochs: 1, verbose: .silent, callbacks: [try CSVLogger(filename: url)])
            let lines = try csvLines(url)
            #expect(lines.count == 2)
            #expect(lines[0] == "epoch,accuracy,loss")
        }

        @Test func appendToEmptyFileWritesHeader() throws {
            let url = try temporaryFolder().appendingPathComponent("history.csv")
            try Data().write(to: url)
            let model = try makeSmallClassifier()
            let logger = try CSVLogger(filename: url, append: true)
            _ = try runScriptedEpochs(logger, model: model, key: "val_loss", values: [0.5])
            #expect(try csvLines(url) == ["epoch,loss,val_loss", "0,1.0,0.5"])
        }

        @Test func separatorAndMissingValues() throws {
            let url = try temporaryFolder().appendingPathComponent("history.csv")
            let model = try makeSmallClassifier()
            let logger = try CSVLogger(filename: url, separator: ";")
            logger.setModel(model)
            try logger.trainBegin()
            try logger.epochEnd(0, logs: ["loss": 1, "b;c": 2])
            try logger.epochEnd(1, logs: ["loss": 0.25])
            try logger.trainEnd(logs: [:])
            #expect(try csvLines(url) == ["epoch;\"b;c\";loss", "0;2.0;1.0", "1;NA;0.25"])
        }

        @Test func rowsReachDiskEachEpoch() throws {
            // A crash after an epoch must leave that epoch's row in the file, so each row is
            // written before the next epoch starts, not when training ends.
            let url = try temporaryFolder().appendingPathComponent("history.csv")
            let logger = try CSVLogger(filename: url)
            try logger.trainBegin()
            try logger.epochEnd(0, logs: ["loss": 0.5])
            #expect(try csvLines(url) == ["epoch,loss", "0,0.5"])
            try logger.epochEnd(1, logs: ["loss": 0.25])
            #expect(try csvLines(url) == ["epoch,loss", "0,0.5", "1,0.25"])
        }

        @Test func invalidSeparatorRejected() {
            let url = URL(fileURLWithPath: "/tmp/unused.csv")
            for separator in ["", "\"", "\n"] {
                let message = errorMessage { _ = try CSVLogger(filename: url, separator: separator) }
                #expect(message?.hasPrefix("CSVLogger separator must be non-empty") == true, "\(message ?? "no error")")
            }
        }

        @Test func missingFolderNamed() throws {
            let url = URL(fileURLWithPath: "/nonexistent-folder/history.csv")
            let logger = try CSVLogger(filename: url)
            let message = errorMessage { try logger.trainBegin() }
            #expect(message?.hasPrefix("/nonexistent-folder/history.csv: cannot create the CSVLogger file") == true, "\(message ?? "no error")")
        }
    }
}

extension CallbackTests {
    @Suite struct TrainingInterruptionTests {
        @Test func stopsAfterCurrentBatch() throws {
            let folder = try temporaryFolder()
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 100)
            let interruption = TrainingInterruption()
            let recorder = RecordingCallback()
            recorder.onBatchEnd = { epoch, batch in
                if epoch == 1 && batch == 2 { interruption.request() }
            }
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/last-{epoch}.nk", saveOnInterruption: true)
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 10, epochs: 4, verbose: .silent, callbacks: [recorder, checkpoint],
                validationSplit: 0.2, interruption: interruption)

            #expect(history.epoch == [0])
            #expect(interruption.stopPoint == TrainingInterruption.StopPoint(epoch: 1, completedBatches: 3, batchesPerEpoch: 8))
            #expect(recorder.events.suffix(2) == ["trainInterrupted 1 3", "trainEnd [\"accuracy\", \"loss\", \"val_accuracy\", \"val_loss\"]"])
            #expect(!recorder.events.contains { $0.hasPrefix("epochEnd 1") })
            let saved = try Sequential.load(from: folder.appendingPathComponent("last-2.nk"))
            #expect(saved.optimizer?.iterations == 8 + 3)
            #expect(saved.parameters.map(\.value) == model.parameters.map(\.value))
        }

        @Test func requestAfterLastBatchFinishesEpoch() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 40)
            let interruption = TrainingInterruption()
            let recorder = RecordingCallback()
            recorder.onBatchEnd = { epoch, batch in
                if epoch == 0 && batch == 3 { interruption.request() }
            }
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 10, epochs: 3, verbose: .silent, callbacks: [recorder], interruption: interruption)
            #expect(history.epoch == [0])
            #expect(interruption.stopPoint == TrainingInterruption.StopPoint(epoch: 0, completedBatches: 4, batchesPerEpoch: 4))
            #expect(recorder.events.contains("trainInterrupted 0 4"))
        }

        @Test func requestDuringLastEpochIsNoStop() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            let interruption = TrainingInterruption()
            let recorder = RecordingCallback()
            recorder.onBatchEnd = { epoch, batch in
                if epoch == 1 && batch == 1 { interruption.request() }
            }
            let history = try model.fit(
                x: data.x, y: data.y, batchSize: 10, epochs: 2, verbose: .silent, callbacks: [recorder], interruption: interruption)
            #expect(history.epoch == [0, 1])
            #expect(interruption.stopPoint == nil)
            #expect(interruption.isRequested)
        }

        @Test func interruptedLineEndsOutput() throws {
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 40)
            let interruption = TrainingInterruption()
            interruption.request()
            var printed = ""
            try model.fit(
                x: data.x, y: data.y, batchSize: 10, epochs: 2, verbose: .epochLines, interruption: interruption,
                output: { printed += $0 })
            let lines = printed.split(separator: "\n").map(String.init)
            #expect(lines.count == 2)
            #expect(lines[1].hasPrefix("1/4 - interrupted - loss: "), "\(lines[1])")
        }

        @Test func resetClearsRequest() throws {
            let interruption = TrainingInterruption()
            interruption.request()
            #expect(interruption.isRequested)
            interruption.reset()
            #expect(!interruption.isRequested)
            let model = try makeSmallClassifier()
            let data = makeSmallDataset(count: 20)
            let history = try model.fit(x: data.x, y: data.y, batchSize: 10, epochs: 2, verbose: .silent, interruption: interruption)
            #expect(history.epoch == [0, 1])
        }

        /// Two SIGINTs at once, as `timeout -s INT` sends them, count as one request; a
        /// later one, as a second Ctrl-C, takes the exit path.
        @Test func simultaneousSignalsCountOnce() {
            let interruption = TrainingInterruption()
            let start: UInt64 = 1_000_000_000
            #expect(interruption.receiveSignal(at: start) == .first)
            #expect(interruption.receiveSignal(at: start + 1_000) == .sameInterrupt)
            #expect(interruption.isRequested)
            #expect(interruption.receiveSignal(at: start + TrainingInterruption.repeatGraceNanoseconds) == .repeated)
        }

        @Test func resetForgetsFirstSignal() {
            let interruption = TrainingInterruption()
            #expect(interruption.receiveSignal(at: 1_000) == .first)
            interruption.reset()
            #expect(interruption.receiveSignal(at: 2_000_000_000) == .first)
            #expect(interruption.isRequested)
        }
    }
}

extension CallbackTests {
    @Suite struct ResumeTrainingTests {
        @Test func resumeMatchesUninterruptedRun() throws {
            let folder = try temporaryFolder()
            let data = makeSmallDataset(count: 300)
            let uninterrupted = try makeSmallClassifier(seed: 21)
            let fullHistory = try uninterrupted.fit(
                x: data.x, y: data.y, batchSize: 32, epochs: 4, verbose: .silent, validationSplit: 0.2)

            let first = try makeSmallClassifier(seed: 21)
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/epoch-{epoch}.nk")
            try first.fit(x: data.x, y: data.y, batchSize: 32, epochs: 2, verbose: .silent, callbacks: [checkpoint], validationSplit: 0.2)
            let resumed = try Sequential.load(from: folder.appendingPathComponent("epoch-2.nk"))
            let resumedHistory = try resumed.fit(
                x: data.x, y: data.y, batchSize: 32, epochs: 4, verbose: .silent, validationSplit: 0.2, initialEpoch: 2)

            #expect(resumedHistory.epoch == [2, 3])
            for key in fullHistory.keys {
                #expect(resumedHistory[key] == Array(fullHistory[key]!.suffix(2)), "key \(key)")
            }
            let expected = uninterrupted.parameters.map { $0.value.scalars.map(\.bitPattern) }
            let actual = resumed.parameters.map { $0.value.scalars.map(\.bitPattern) }
            #expect(actual == expected)
            #expect(resumed.optimizer?.iterations == uninterrupted.optimizer?.iterations)
        }

        /// A model saved inside an epoch continues at the next batch with that epoch's
        /// shuffle, so the weights end bit for bit as in the uninterrupted run.
        @Test(arguments: [true, false])
        func resumeInsideEpochMatchesUninterruptedRun(shuffle: Bool) throws {
            let folder = try temporaryFolder()
            let data = makeSmallDataset(count: 300)
            let uninterrupted = try makeSmallClassifier(seed: 22)
            let fullHistory = try uninterrupted.fit(
                x: data.x, y: data.y, batchSize: 32, epochs: 3, verbose: .silent, validationSplit: 0.2, shuffle: shuffle)

            let first = try makeSmallClassifier(seed: 22)
            let interruption = TrainingInterruption()
            let recorder = RecordingCallback()
            recorder.onBatchEnd = { epoch, batch in
                if epoch == 1 && batch == 2 { interruption.request() }
            }
            let checkpoint = try ModelCheckpoint(filepath: folder.path + "/last.nk", saveOnInterruption: true)
            try first.fit(
                x: data.x, y: data.y, batchSize: 32, epochs: 3, verbose: .silent, callbacks: [recorder, checkpoint],
                validationSplit: 0.2, shuffle: shuffle, interruption: interruption)
            #expect(first.unfinishedEpoch == TrainingInterruption.StopPoint(epoch: 1, completedBatches: 3, batchesPerEpoch: 8))

            let resumed = try Sequential.load(from: folder.appendingPathComponent("last.nk"))
            #expect(resumed.unfinishedEpoch == first.unfinishedEpoch)
            let resumedHistory = try resumed.fit(
                x: data.x, y: data.y, batchSize: 32, epochs: 3, verbose: .silent, validationSplit: 0.2, shuffle: shuffle,
                initialEpoch: 1)

            #expect(resumedHistory.epoch == [1, 2])
            #expect(resumedHistory["loss"]?.last == fullHistory["loss"]?.last)
            #expect(resumedHistory["val_loss"] == Array(fullHistory["val_loss"]!.suffix(2)))
            let expected = uninterrupted.parameters.map { $0.value.scalars.map(\.bitPattern) }
            let actual = resumed.parameters.map { $0.value.scalars.map(\.bitPattern) }
            #expect(actual == expected)
            #expect(resumed.optimizer?.iterations == uninterrupted.optimizer?.iterations)
            #expect(resumed.unfinishedEpoch == nil)
        }

        /// Returns a small classifier stopped in its first epoch after 2 of 8 batches of
        /// 32 (240 training samples), with the data it trained on.
        private func modelStoppedInFirstEpoch(seed: UInt64) throws -> (model: Sequential, data: (x: Tensor<Float>, y: Tensor<Int32>)) {
            let data = makeSmallDataset(count: 300)
            let model = try makeSmallClassifier(seed: seed)
            let interruption = TrainingInterruption()
            let recorder = RecordingCallback()
            recorder.onBatchEnd = { epoch, batch in
                if epoch == 0 && batch == 1 { interruption.request() }
            }
            try model.fit(
                x: data.x, y: data.y, batchSize: 32, epochs: 2, verbose: .silent, callbacks: [recorder],
                validationSplit: 0.2, interruption: interruption)
            return (model, data)
        }

        /// Other batches per epoch than the saved position's start the epoch again.
        @Test func resumeWithOtherBatchSizeRestartsEpoch() throws {
            let (model, data) = try modelStoppedInFirstEpoch(seed: 23)
            #expect(model.unfinishedEpoch?.completedBatches == 2)
            #expect(model.continuableEpoch(trainingSamples: 240, batchSize: 32) == model.unfinishedEpoch)
            #expect(model.continuableEpoch(trainingSamples: 240, batchSize: 16) == nil)

            let counter = RecordingCallback()
            try model.fit(x: data.x, y: data.y, batchSize: 16, epochs: 1, verbose: .silent, callbacks: [counter], validationSplit: 0.2)
            #expect(counter.events.filter { $0.hasPrefix("batchEnd") }.count == 15)
        }

        /// Other training samples with the same batches per epoch (237 and 240 samples
        /// both make 8 batches of 32) would shuffle other rows, so the epoch starts again.
        @Test func resumeWithOtherSampleCountRestartsEpoch() throws {
            let (model, data) = try modelStoppedInFirstEpoch(seed: 24)
            #expect(model.continuableEpoch(trainingSamples: 237, batchSize: 32) == nil)

            let counter = RecordingCallback()
            try model.fit(x: data.x, y: data.y, batchSize: 32, epochs: 1, verbose: .silent, callbacks: [counter], validationSplit: 0.21)
            #expect(counter.events.filter { $0.hasPrefix("batchEnd") }.count == 8)
        }

        /// A fit that trains no epoch keeps the position for a later save.
        @Test func fitWithoutEpochsKeepsPosition() throws {
            let (model, data) = try modelStoppedInFirstEpoch(seed: 25)
            let position = model.unfinishedEpoch
            #expect(position != nil)
            try model.fit(x: data.x, y: data.y, batchSize: 32, epochs: 1, verbose: .silent, validationSplit: 0.2, initialEpoch: 1)
            #expect(model.unfinishedEpoch == position)
        }
    }
}

/// Runs `neuralkit` with `arguments`, sends SIGINT once standard output contains
/// `marker`, and returns the exit status, standard output and standard error.
private func runNeuralKitInterrupting(_ arguments: [String], after marker: String) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = neuralKitExecutable
    process.arguments = arguments
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()

    var outputData = Data()
    while true {
        let chunk = output.fileHandleForReading.availableData
        if chunk.isEmpty { break }
        outputData.append(chunk)
        if String(decoding: outputData, as: UTF8.self).contains(marker) {
            process.interrupt()
            break
        }
    }
    outputData.append(output.fileHandleForReading.readDataToEndOfFile())
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

extension CallbackTests {
    @Suite struct TrainingFilesCommandLineTests {
        private let shortRun = ["mnist", "--limit", "500", "--epochs", "1", "--batch-size", "100"]

        @Test func saveThenResumeAppendsHistory() throws {
            let folder = try temporaryFolder()
            let model = folder.appendingPathComponent("model.nk").path
            let csv = folder.appendingPathComponent("history.csv").path
            let first = try runNeuralKit(shortRun + ["--verbose", "0", "--save", model, "--history-csv", csv])
            #expect(first.status == 0, "\(first.error)")
            #expect(first.output.contains("Saved the model to \(model)"))
            #expect(try csvLines(URL(fileURLWithPath: csv)).count == 2)

            let second = try runNeuralKit(
                ["mnist", "--limit", "500", "--epochs", "2", "--batch-size", "100", "--verbose", "2", "--resume", model, "--history-csv", csv])
            #expect(second.status == 0, "\(second.error)")
            #expect(second.output.contains("Resuming \(model) at epoch 2 of 2"), "\(second.output)")
            #expect(second.output.contains("Epoch 2/2"))
            #expect(!second.output.contains("Epoch 1/2"))
            let lines = try csvLines(URL(fileURLWithPath: csv))
            #expect(lines.first == "epoch,accuracy,loss,val_accuracy,val_loss")
            #expect(lines.dropFirst().map { $0.split(separator: ",")[0] } == ["0", "1"])
        }

        @Test func resumedRunMatchesLongerRun() throws {
            let folder = try temporaryFolder()
            let model = folder.appendingPathComponent("model.nk").path
            let resumedCSV = folder.appendingPathComponent("resumed.csv").path
            let fullCSV = folder.appendingPathComponent("full.csv").path
            let twoEpochs = ["mnist", "--limit", "500", "--epochs", "2", "--batch-size", "100", "--verbose", "0"]
            #expect(try runNeuralKit(shortRun + ["--verbose", "0", "--save", model, "--history-csv", resumedCSV]).status == 0)
            #expect(try runNeuralKit(twoEpochs + ["--resume", model, "--history-csv", resumedCSV]).status == 0)
            #expect(try runNeuralKit(twoEpochs + ["--history-csv", fullCSV]).status == 0)
            #expect(try csvLines(URL(fileURLWithPath: resumedCSV)) == csvLines(URL(fileURLWithPath: fullCSV)))
        }

        @Test func checkpointCreatesFolderAndFiles() throws {
            let folder = try temporaryFolder().appendingPathComponent("new/checkpoints")
            let result = try runNeuralKit(shortRun + ["--verbose", "0", "--checkpoint", folder.path])
            #expect(result.status == 0, "\(result.error)")
            #expect(try fileNames(in: folder) == ["epoch-01.nk", "last.nk"])
            let loaded = try Sequential.load(from: folder.appendingPathComponent("last.nk"))
            #expect(loaded.optimizer?.iterations == 4)
        }

        @Test func bothLossesGetOwnFiles() throws {
            let folder = try temporaryFolder()
            let result = try runNeuralKit(
                shortRun + [
                    "--verbose", "0", "--loss", "both", "--save", folder.appendingPathComponent("model.nk").path,
                    "--checkpoint", folder.appendingPathComponent("checkpoints").path,
                    "--history-csv", folder.appendingPathComponent("history.csv").path,
                ])
            #expect(result.status == 0, "\(result.error)")
            #expect(try fileNames(in: folder) == [
                "checkpoints", "history-categorical.csv", "history-sparse.csv", "model-categorical.nk", "model-sparse.nk",
            ])
            #expect(try fileNames(in: folder.appendingPathComponent("checkpoints")) == ["categorical", "sparse"])
            let categorical = try Sequential.load(from: folder.appendingPathComponent("model-categorical.nk"))
            #expect(categorical.loss is CategoricalCrossentropy)
        }

        @Test func earlyStoppingRestoresBestEpoch() throws {
            let result = try runNeuralKit(
                ["mnist", "--limit", "500", "--epochs", "2", "--batch-size", "100", "--verbose", "0", "--early-stopping", "0"])
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.contains("Restoring model weights from the end of the best epoch: "), "\(result.output)")
        }

        @Test(arguments: [
            (["--resume", "/nonexistent/model.nk"], "--resume '/nonexistent/model.nk': file not found; pass a model file written by --save or --checkpoint"),
            (["--save", "/nonexistent/model.nk"], "--save '/nonexistent/model.nk': folder /nonexistent not found; create it or choose another path"),
            (["--history-csv", "/nonexistent/h.csv"], "--history-csv '/nonexistent/h.csv': folder /nonexistent not found"),
            (["--save", "/tmp"], "--save '/tmp' is a folder; pass a file path such as /tmp/model.nk"),
            (["--early-stopping", "-1"], "--early-stopping must be an integer of at least 0, got '-1'"),
            (["--early-stopping", "2", "--validation-split", "0"], "--early-stopping 2 monitors val_loss, which needs a --validation-split greater than 0"),
            (["--resume", "/tmp", "--loss", "sparse"], "--resume '/tmp' is a folder"),
            (["--checkpoint", "/dev/null"], "--checkpoint '/dev/null' is a file, not a folder"),
        ])
        func invalidFileOptionRejected(arguments: [String], message: String) throws {
            let result = try runNeuralKit(["mnist"] + arguments)
            #expect(result.status == 2)
            #expect(result.error.contains(message), "\(result.error)")
            #expect(result.output.isEmpty)
        }

        @Test func resumeWithBothLossesRejected() throws {
            let file = try temporaryFolder().appendingPathComponent("model.nk")
            try Data("x".utf8).write(to: file)
            let result = try runNeuralKit(["mnist", "--loss", "both", "--resume", file.path])
            #expect(result.status == 2)
            #expect(result.error.contains("--resume continues one run, but --loss both starts two"), "\(result.error)")
        }

        @Test func corruptResumeFileNamed() throws {
            let file = try temporaryFolder().appendingPathComponent("model.nk")
            try Data("not a model".utf8).write(to: file)
            let result = try runNeuralKit(["mnist", "--resume", file.path, "--verbose", "0"])
            #expect(result.status == 1)
            #expect(result.error.contains("--resume: cannot load the model: \(file.path): wrong magic bytes"), "\(result.error)")
        }

        @Test func otherArchitectureRejected() throws {
            let file = try temporaryFolder().appendingPathComponent("small.nk")
            let model = try makeSmallClassifier()
            try model.build(inputShape: [4])
            try model.save(to: file)
            let result = try runNeuralKit(["mnist", "--resume", file.path, "--verbose", "0"])
            #expect(result.status == 1)
            #expect(result.error.contains("--resume '\(file.path)' contains model 'sequential' with input (None, 4)"), "\(result.error)")
            #expect(result.error.contains("but neuralkit mnist trains input (None, 28, 28, 1)"), "\(result.error)")
        }

        @Test func weightsOnlyResumeFileRejected() throws {
            let file = try temporaryFolder().appendingPathComponent("weights.nk")
            let model = ReferenceModels.mnistConvNet()
            try model.build(inputShape: [28, 28, 1])
            try model.saveWeights(to: file)
            let result = try runNeuralKit(["mnist", "--resume", file.path, "--verbose", "0"])
            #expect(result.status == 1)
            #expect(result.error.contains("contains weights only"), "\(result.error)")
        }

        @Test func resumeWithMismatchedLossRejected() throws {
            let file = try temporaryFolder().appendingPathComponent("model.nk")
            #expect(try runNeuralKit(shortRun + ["--verbose", "0", "--save", file.path]).status == 0)
            let result = try runNeuralKit(
                ["mnist", "--limit", "500", "--epochs", "2", "--batch-size", "100", "--loss", "categorical", "--resume", file.path])
            #expect(result.status == 1)
            #expect(result.error.contains("--loss categorical does not match the model in"), "\(result.error)")
        }

        @Test func resumeBeyondEpochsRejected() throws {
            let file = try temporaryFolder().appendingPathComponent("model.nk")
            #expect(try runNeuralKit(shortRun + ["--verbose", "0", "--save", file.path]).status == 0)
            let result = try runNeuralKit(shortRun + ["--verbose", "0", "--resume", file.path])
            #expect(result.status == 1)
            #expect(result.error.contains("--epochs 1 leaves nothing to train"), "\(result.error)")
            #expect(result.error.contains("pass --epochs 2 or more"), "\(result.error)")
        }

        @Test func interruptSavesCheckpoint() throws {
            let folder = try temporaryFolder().appendingPathComponent("checkpoints")
            let result = try runNeuralKitInterrupting(
                ["mnist", "--limit", "5000", "--epochs", "3", "--batch-size", "50", "--verbose", "2", "--checkpoint", folder.path],
                after: "Epoch 2/3")
            #expect(result.status == 130, "\(result.error)")
            let last = folder.appendingPathComponent("last.nk").path
            #expect(result.error.contains("Interrupt received; stopping after the current batch"), "\(result.error)")
            #expect(result.error.contains("the model is saved in \(last). To continue, add --resume \(last)"), "\(result.error)")
            #expect(result.output.contains("saved the model to \(last)"), "\(result.output)")
            #expect(!result.output.contains("Test loss"))
            let saved = try Sequential.load(from: URL(fileURLWithPath: last))
            #expect((saved.optimizer?.iterations ?? 0) > 80)
        }
    }
}
