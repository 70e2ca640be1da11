import Foundation
import NeuralKit

let mnistUsage = """
    Usage: neuralkit mnist [options]

    Trains the MNIST convolutional network (Conv2D 32, MaxPooling2D, Dropout 0.25,
    Conv2D 64, MaxPooling2D, Dropout 0.25, Flatten, Dense 256, Dense 10 softmax) with
    Adam, then prints the test loss and accuracy.

    Options:
      --loss sparse|categorical|both
                              sparse: SparseCategoricalCrossentropy on integer labels;
                              categorical: CategoricalCrossentropy on one-hot labels
                              from toCategorical; both: one run each, then a table
                              (default: sparse)
      --epochs N              passes over the training samples, at least 1 (default: 25)
      --batch-size N          samples per training step, at least 1 (default: 250)
      --validation-split F    fraction in [0, 1) of the training samples held out for
                              validation, taken from the end before shuffling (default: 0.2)
      --learning-rate F       Adam's learning rate, greater than 0 (default: 0.001)
      --seed N                seed for weights, dropout and shuffling, an integer from 0
                              to 2^64-1; same seed and machine, same numbers (default: 42)
      --data DIR              folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
                              t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz
                              (default: the copy in this repository, \(defaultDataDirectory.path))
      --limit N               train on the first N training samples only, at least 1
                              (default: all 60,000)
      --threads N             threads for the kernels, at least 1; results are reproducible
                              for a fixed seed and thread count (default: one per core, \(ProcessInfo.processInfo.activeProcessorCount) here)
      --precision float32|bfloat16
                              arithmetic of the matrix products; bfloat16 rounds their inputs
                              to bfloat16 and sums in float32, which makes an epoch about a
                              quarter shorter, on CPUs with AVX512_BF16 (this one: \(CPUBackend.supports(.bfloat16) ? "yes" : "no")).
                              Weights, activations, gradients and optimizer state stay
                              float32 (default: float32)
      --verbose 0|1|2         0: silent; 1: progress bar, or one line per epoch when
                              output is not a terminal; 2: one line per epoch (default: 1)
    \(mnistTrainingFilesUsage)
      --plot FILE.png         after training, draw loss and accuracy per epoch (training
                              solid, validation dashed; one colour per loss) to a PNG file
                              (default: no plot)
      --confusion-matrix      after evaluation, print the test confusion matrix and each
                              class's precision and recall (default: off)
      -h, --help              show this help
    """

/// The MNIST copy committed in the repository, found from this source file's location
/// so that the tool works from any folder of the checkout.
let defaultDataDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Data/mnist")

struct MNISTSettings {
    var losses: [String]
    var epochs: Int
    var batchSize: Int
    var validationSplit: Double
    var learningRate: Float
    var seed: UInt64
    var dataDirectory: URL
    var limit: Int?
    var verbosity: Verbosity
    var threads: Int
    var precision = ComputePrecision.float32
    var plotFile: URL? = nil
    var printsConfusionMatrix = false
    var trainingFiles = MNISTTrainingFiles()
}

/// The outcome of training with one loss, for the comparison table.
struct MNISTRunResult {
    var loss: String
    var history: History
    var testLoss: Float
    var testAccuracy: Float
    var seconds: Double
}

func runMNISTCommand(_ arguments: [String]) -> Int32 {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(mnistUsage)
        return 0
    }
    let settings: MNISTSettings
    do {
        settings = try parseMNISTSettings(arguments)
    } catch {
        FileHandle.standardError.write(Data("neuralkit mnist: error: \(error)\nRun 'neuralkit mnist --help' for the options.\n".utf8))
        return 2
    }
    do {
        try trainMNIST(settings)
        return 0
    } catch let interrupted as MNISTTrainingInterrupted {
        FileHandle.standardError.write(Data("neuralkit mnist: \(interrupted)\n".utf8))
        return 130
    } catch {
        FileHandle.standardError.write(Data("neuralkit mnist: error: \(error)\n".utf8))
        return 1
    }
}

func parseMNISTSettings(_ arguments: [String]) throws -> MNISTSettings {
    let options = try CommandLineOptions(
        arguments,
        valued: ["loss", "epochs", "batch-size", "validation-split", "learning-rate", "seed", "data", "limit", "verbose", "threads", "precision",
                 "plot", "save", "checkpoint", "resume", "early-stopping", "history-csv"],
        switches: ["confusion-matrix"])
    let loss = try options.choice("loss", default: "sparse", choices: ["sparse", "categorical", "both"])
    var seed: UInt64 = 42
    if let text = options.string("seed") {
        guard let value = UInt64(text) else {
            throw UsageError("--seed must be an integer from 0 to 18446744073709551615, got '\(text)'")
        }
        seed = value
    }
    var limit: Int?
    if options.string("limit") != nil {
        limit = try options.integer("limit", default: 0, range: 1...Int.max)
    }
    let verbose = try options.integer("verbose", default: 1, range: 0...2)
    return MNISTSettings(
        losses: loss == "both" ? ["sparse", "categorical"] : [loss],
        epochs: try options.integer("epochs", default: 25, range: 1...Int.max),
        batchSize: try options.integer("batch-size", default: 250, range: 1...Int.max),
        validationSplit: try options.number(
            "validation-split", default: 0.2, rule: "a number in [0, 1)", isValid: { $0 >= 0 && $0 < 1 }),
        learningRate: Float(try options.number(
            "learning-rate", default: 0.001, rule: "a number greater than 0 and at most 3.4e38 (a finite Float)",
            isValid: { $0 > 0 && Float($0) > 0 && Float($0).isFinite })),
        seed: seed,
        dataDirectory: try dataFolderOption(options),
        limit: limit,
        verbosity: Verbosity(rawValue: verbose)!,
        threads: try options.integer("threads", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256),
        precision: ComputePrecision(
            rawValue: try options.choice("precision", default: "float32", choices: ComputePrecision.allCases.map(\.rawValue)))!,
        plotFile: try plotFileOption(options),
        printsConfusionMatrix: options.has("confusion-matrix"),
        trainingFiles: try MNISTTrainingFiles(options))
}

func trainMNIST(_ settings: MNISTSettings) throws {
    guard CPUBackend.supports(settings.precision) else {
        throw UsageError(
            "--precision \(settings.precision.rawValue) needs a CPU with AVX-512 (F, BW and VL) and AVX512_BF16, "
                + "and this CPU lacks at least one of them; use --precision float32")
    }
    defaultBackend = try CPUBackend(threadCount: settings.threads, precision: settings.precision)
    // Ctrl-C is handled from here to the end: during fit it stops after the current
    // batch, and between steps (loading, evaluating) the command stops at the next check.
    let interruption = TrainingInterruption()
    interruption.installSignalHandler()
    defer { interruption.removeSignalHandler() }

    if let plotFile = settings.plotFile { try checkOutputFile(plotFile) }
    let files = settings.trainingFiles
    let resumed = try files.resumeFile.map { try ResumedMNISTModel(file: $0, files: files) }
    let losses = resumed.map { [$0.lossName] } ?? settings.losses
    try files.checkSaveFiles(losses: losses)
    try files.createFolders(losses: losses)
    // Pixels stay in bytes and are divided by 255 a batch at a time, which gives the
    // same floats as dividing the whole set up front in a quarter of the memory.
    let data = try MNIST.loadBytes(from: settings.dataDirectory)
    var trainImages = ScaledBytes(data.trainImages, divisor: 255)
    let testImages = ScaledBytes(data.testImages, divisor: 255)
    var trainLabels = data.trainLabels
    if let limit = settings.limit {
        guard limit <= trainImages.shape[0] else {
            throw UsageError("--limit \(limit) exceeds the \(trainImages.shape[0]) training samples in \(settings.dataDirectory.path)")
        }
        trainImages = trainImages.slicing(rows: 0..<limit)
        trainLabels = trainLabels.slicing(rows: 0..<limit)
    }
    try checkValidationSplit(settings.validationSplit, samples: trainImages.shape[0])
    try stopIfInterrupted(interruption, while: "loading the data")
    let quiet = settings.verbosity == .silent

    var results: [MNISTRunResult] = []
    for lossName in losses {
        let model = resumed?.model ?? ReferenceModels.mnistConvNet(seed: settings.seed)
        let loss: any Loss = resumed?.model.loss ?? (lossName == "sparse" ? SparseCategoricalCrossentropy() : CategoricalCrossentropy())
        if resumed == nil {
            try model.compile(loss: loss, optimizer: Adam(learningRate: settings.learningRate), metrics: ["accuracy"])
        }
        let initialEpoch = try resumed?.initialEpoch(
            trainingSamples: trainImages.shape[0], batchSize: settings.batchSize, validationSplit: settings.validationSplit,
            epochs: settings.epochs) ?? 0
        let callbacks = try files.callbacks(lossName: lossName, runCount: losses.count, resuming: resumed != nil)
        let checkpointFolder = files.checkpointFolder(lossName: lossName, runCount: losses.count)
        if !quiet {
            print(try model.summary())
            let samples = trainImages.shape[0]
            print("Training with \(loss.name) on \(samples) sample\(samples == 1 ? "" : "s") "
                + "(validation split \(settings.validationSplit)), batch size \(settings.batchSize), "
                + "\(settings.epochs) epoch\(settings.epochs == 1 ? "" : "s"), seed \(settings.seed), \(settings.threads) thread(s), "
                + "\(settings.precision.rawValue) matrix products")
        }

        let start = Date()
        let history: History
        let evaluation: [String: Float]
        if lossName == "sparse" {
            history = try fitHandlingInterrupts(interruption, checkpointFolder: checkpointFolder) { interruption in
                try model.fit(
                    x: trainImages, y: trainLabels, batchSize: settings.batchSize, epochs: settings.epochs,
                    verbose: settings.verbosity, callbacks: callbacks, validationSplit: settings.validationSplit,
                    initialEpoch: initialEpoch, interruption: interruption)
            }
            evaluation = try model.evaluate(x: testImages, y: data.testLabels, batchSize: settings.batchSize)
        } else {
            let oneHotTrain = try toCategorical(trainLabels, numClasses: MNIST.classCount)
            let oneHotTest = try toCategorical(data.testLabels, numClasses: MNIST.classCount)
            history = try fitHandlingInterrupts(interruption, checkpointFolder: checkpointFolder) { interruption in
                try model.fit(
                    x: trainImages, y: oneHotTrain, batchSize: settings.batchSize, epochs: settings.epochs,
                    verbose: settings.verbosity, callbacks: callbacks, validationSplit: settings.validationSplit,
                    initialEpoch: initialEpoch, interruption: interruption)
            }
            evaluation = try model.evaluate(x: testImages, y: oneHotTest, batchSize: settings.batchSize)
        }
        let seconds = Date().timeIntervalSince(start)
        try stopIfInterrupted(
            interruption, while: "evaluating the \(loss.name) model",
            savedIn: checkpointFolder.map { $0.appendingPathComponent("last.nk").path })
        try files.saveModel(model, lossName: lossName, runCount: losses.count)
        let result = MNISTRunResult(
            loss: loss.name, history: history, testLoss: evaluation["loss"] ?? .nan,
            testAccuracy: evaluation["accuracy"] ?? .nan, seconds: seconds)
        results.append(result)
        print(String(format: "Test loss: %.4f / Test accuracy: %.4f", result.testLoss, result.testAccuracy))
        if settings.printsConfusionMatrix {
            try printConfusionMatrix(
                model: model, images: testImages, labels: data.testLabels, batchSize: settings.batchSize,
                title: "Test confusion matrix (\(loss.name))")
        }
    }

    if results.count > 1 { print(comparisonTable(results)) }
    if let plotFile = settings.plotFile {
        try plotTrainingHistory(results.map { ($0.loss, $0.history) }, to: plotFile, title: "MNIST training history")
        print("Wrote the training plot to \(plotFile.path)")
    }
    if !quiet {
        print(String(format: "Peak memory (maximum resident set size): %.1f MB", Double(peakResidentBytes()) / 1_048_576))
    }
}

/// Returns the value of `--data`, or the repository's MNIST copy when it is absent.
func dataFolderOption(_ options: CommandLineOptions) throws -> URL {
    guard let text = options.string("data") else { return defaultDataDirectory }
    guard !text.isEmpty else {
        throw UsageError("--data needs a folder path, got ''; omit --data to use \(defaultDataDirectory.path)")
    }
    return URL(fileURLWithPath: text)
}

/// Throws `MNISTTrainingInterrupted` if Ctrl-C was pressed, naming what was running and,
/// when training had finished, the checkpoint that contains the trained model.
func stopIfInterrupted(_ interruption: TrainingInterruption, while activity: String, savedIn checkpoint: String? = nil) throws {
    guard interruption.isRequested else { return }
    if let checkpoint {
        throw MNISTTrainingInterrupted(
            description: "interrupted while \(activity), after training finished; the trained model is in \(checkpoint), "
                + "and nothing else was saved")
    }
    throw MNISTTrainingInterrupted(description: "interrupted while \(activity); nothing more was trained or saved")
}

/// Throws `UsageError` naming `--validation-split` when it leaves no training or no
/// validation sample, computed as `fit` does.
func checkValidationSplit(_ split: Double, samples: Int) throws {
    guard split > 0 else { return }
    let training = Int((Double(samples) * (1 - split)).rounded(.down))
    guard training > 0, training < samples else {
        throw UsageError(
            "--validation-split \(split) of \(samples) training samples leaves \(training) for training and "
                + "\(samples - training) for validation; both need at least one, so change --validation-split or --limit")
    }
}

/// Formats a Markdown table comparing the runs: final validation figures, test figures and time.
func comparisonTable(_ results: [MNISTRunResult]) -> String {
    var lines = [
        "| loss | final val_loss | final val_accuracy | test loss | test accuracy | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for result in results {
        let validationLoss = result.history["val_loss"]?.last.map { String(format: "%.4f", $0) } ?? "-"
        let validationAccuracy = result.history["val_accuracy"]?.last.map { String(format: "%.4f", $0) } ?? "-"
        lines.append(
            "| \(result.loss) | \(validationLoss) | \(validationAccuracy) | "
                + String(format: "%.4f | %.4f | %.1f |", result.testLoss, result.testAccuracy, result.seconds))
    }
    return lines.joined(separator: "\n")
}

/// Returns the process's peak resident set size in bytes, from getrusage (Linux reports kilobytes).
func peakResidentBytes() -> Int {
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
    #else
    getrusage(RUSAGE_SELF, &usage)
    return usage.ru_maxrss
    #endif
}

/// The value of `--plot`, which must name a `.png` file because the plot is written as PNG.
func plotFileOption(_ options: CommandLineOptions) throws -> URL? {
    guard let text = options.string("plot") else { return nil }
    guard text.lowercased().hasSuffix(".png") else {
        throw UsageError("--plot needs a file name ending in .png, got '\(text)'")
    }
    return URL(fileURLWithPath: text)
}
