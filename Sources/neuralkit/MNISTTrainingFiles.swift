import Foundation
import NeuralKit

let mnistTrainingFilesUsage = """
      --save FILE             after training, save the model (weights, optimizer state and
                              generators) to FILE, for --resume or neuralkit evaluate; not
                              written when Ctrl-C stops training. With --loss both, FILE
                              gets the loss name before its extension: model.nk gives
                              model-sparse.nk and model-categorical.nk (default: not saved)
      --checkpoint DIR        after every epoch, save the model to DIR/epoch-NN.nk (NN the
                              1-based epoch; about 5 MB each) and DIR/last.nk; Ctrl-C
                              stops after the current batch and saves to DIR/last.nk; DIR
                              is created if missing; with --loss both, DIR/sparse and
                              DIR/categorical (default: no checkpoints)
      --resume FILE           continue training a model saved by --save or --checkpoint
                              with its loss, optimizer state and learning rate, from the
                              epoch after the last one it completed up to --epochs, or
                              inside the epoch that Ctrl-C stopped, at its next batch (that
                              epoch's training loss and accuracy then cover the batches
                              after the resume). The completed epochs are its optimizer
                              steps divided by the steps per epoch, so keep --limit,
                              --batch-size and --validation-split.
                              --seed is ignored; --learning-rate, if given, replaces the
                              saved rate; --loss both is rejected (default: a new model)
      --early-stopping N      stop once val_loss has not improved for N epochs, an integer
                              of at least 0, then evaluate and --save the weights of the
                              epoch with the lowest val_loss (checkpoints keep the weights
                              of their epoch) (default: off, train all --epochs)
      --history-csv FILE      write one CSV row per epoch: epoch (from 0), then the logged
                              values in sorted key order; with --resume, rows are appended;
                              with --loss both, FILE gets the loss name as with --save
                              (default: no CSV)
    """

/// The options of `neuralkit mnist` that save, resume and stop training.
struct MNISTTrainingFiles {
    static let optionNames: Set<String> = ["save", "checkpoint", "resume", "early-stopping", "history-csv"]

    var saveFile: URL?
    var checkpointDirectory: URL?
    var resumeFile: URL?
    var earlyStoppingPatience: Int?
    var historyCSVFile: URL?
    /// The `--loss` and `--learning-rate` values given on the command line, which
    /// `--resume` checks and applies.
    var lossOption: String?
    var learningRateOption: Float?

    init() {}

    /// Reads and checks the options, or throws `UsageError` naming the option, the value
    /// and the fix.
    init(_ options: CommandLineOptions) throws {
        lossOption = options.string("loss")
        if options.string("learning-rate") != nil {
            learningRateOption = Float(try options.number(
                "learning-rate", default: 0.001, rule: "a number greater than 0", isValid: { $0 > 0 && Float($0) > 0 }))
        }
        saveFile = try outputFile(options, "save")
        historyCSVFile = try outputFile(options, "history-csv")

        if let text = options.string("checkpoint") {
            guard !text.isEmpty else { throw UsageError("--checkpoint needs a folder path, got ''") }
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: text, isDirectory: &isFolder), !isFolder.boolValue {
                throw UsageError("--checkpoint '\(text)' is a file, not a folder; pass a folder path, which is created if missing")
            }
            checkpointDirectory = URL(fileURLWithPath: text)
        }

        if let text = options.string("resume") {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: text, isDirectory: &isFolder) else {
                throw UsageError("--resume '\(text)': file not found; pass a model file written by --save or --checkpoint")
            }
            guard !isFolder.boolValue else {
                throw UsageError("--resume '\(text)' is a folder; pass a model file in it, such as \(text)/last.nk")
            }
            guard lossOption != "both" else {
                throw UsageError(
                    "--resume continues one run, but --loss both starts two; omit --loss to use the loss saved in '\(text)'")
            }
            resumeFile = URL(fileURLWithPath: text)
        }

        if options.string("early-stopping") != nil {
            let patience = try options.integer("early-stopping", default: 0, range: 0...Int.max)
            let split = try options.number(
                "validation-split", default: 0.2, rule: "a number in [0, 1)", isValid: { $0 >= 0 && $0 < 1 })
            guard split > 0 else {
                throw UsageError("--early-stopping \(patience) monitors val_loss, which needs a --validation-split greater than 0")
            }
            earlyStoppingPatience = patience
        }
    }

    /// Creates the checkpoint folders of every run.
    func createFolders(losses: [String]) throws {
        for lossName in losses {
            guard let folder = checkpointFolder(lossName: lossName, runCount: losses.count) else { continue }
            do {
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            } catch {
                throw UsageError("--checkpoint: cannot create the folder \(folder.path): \(error.localizedDescription)")
            }
        }
    }

    /// Returns the `--save` file of one run: the file itself, or with `-<loss>` before
    /// the extension when several runs share the option.
    func saveFile(lossName: String, runCount: Int) -> URL? {
        saveFile.map { runCount > 1 ? insertingSuffix(lossName, into: $0) : $0 }
    }

    func historyCSVFile(lossName: String, runCount: Int) -> URL? {
        historyCSVFile.map { runCount > 1 ? insertingSuffix(lossName, into: $0) : $0 }
    }

    func checkpointFolder(lossName: String, runCount: Int) -> URL? {
        checkpointDirectory.map { runCount > 1 ? $0.appendingPathComponent(lossName) : $0 }
    }

    /// Checks before training that every `--save` file can be created, so that a trained
    /// model is not lost to a folder that rejects the file at the end.
    func checkSaveFiles(losses: [String]) throws {
        for lossName in losses {
            guard let file = saveFile(lossName: lossName, runCount: losses.count) else { continue }
            try checkWritable(file, option: "save")
        }
    }

    /// Saves the model to the `--save` file of one run, if given, and prints the path.
    func saveModel(_ model: Sequential, lossName: String, runCount: Int) throws {
        guard let file = saveFile(lossName: lossName, runCount: runCount) else { return }
        try model.save(to: file)
        print("Saved the model to \(file.path)")
    }

    /// Returns the callbacks for one run. With `resuming`, the CSV logger appends.
    func callbacks(lossName: String, runCount: Int, resuming: Bool) throws -> [any Callback] {
        var callbacks: [any Callback] = []
        if let file = historyCSVFile(lossName: lossName, runCount: runCount) {
            callbacks.append(try CSVLogger(filename: file, append: resuming))
        }
        if let folder = checkpointFolder(lossName: lossName, runCount: runCount) {
            // Braces in the folder name are doubled so that the pattern reads them literally.
            let escaped = folder.path.replacingOccurrences(of: "{", with: "{{").replacingOccurrences(of: "}", with: "}}")
            callbacks.append(try ModelCheckpoint(filepath: escaped + "/epoch-{epoch:02d}.nk"))
            callbacks.append(try ModelCheckpoint(filepath: escaped + "/last.nk", saveOnInterruption: true))
        }
        if let patience = earlyStoppingPatience {
            callbacks.append(try EarlyStopping(monitor: "val_loss", patience: patience, restoreBestWeights: true, verbose: true))
        }
        return callbacks
    }
}

/// Returns the `--NAME` file path after checking that its folder exists and that it is
/// not a folder itself, so that a bad path fails before training instead of after it.
private func outputFile(_ options: CommandLineOptions, _ name: String) throws -> URL? {
    guard let text = options.string(name) else { return nil }
    guard !text.isEmpty else { throw UsageError("--\(name) needs a file path, got ''") }
    let url = URL(fileURLWithPath: text)
    var isFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
        let example = url.appendingPathComponent(name == "history-csv" ? "history.csv" : "model.nk").path
        throw UsageError("--\(name) '\(text)' is a folder; pass a file path such as \(example)")
    }
    let folder = url.deletingLastPathComponent()
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
        throw UsageError("--\(name) '\(text)': folder \(folder.path) not found; create it or choose another path")
    }
    return url
}

/// Throws `UsageError` naming `--option` unless a file can be created next to `file`:
/// the check creates and removes an empty temporary file there.
func checkWritable(_ file: URL, option: String) throws {
    let probe = file.deletingLastPathComponent().appendingPathComponent(".\(file.lastPathComponent).write-check-\(getpid())")
    guard FileManager.default.createFile(atPath: probe.path, contents: Data()) else {
        throw UsageError(
            "--\(option) '\(file.path)': cannot create files in \(file.deletingLastPathComponent().path) "
                + "(\(String(cString: strerror(errno)))); choose a writable folder")
    }
    try? FileManager.default.removeItem(at: probe)
}

/// Inserts `-suffix` before the extension: `model.nk` becomes `model-sparse.nk`.
private func insertingSuffix(_ suffix: String, into url: URL) -> URL {
    let pathExtension = url.pathExtension
    let stem = url.deletingPathExtension().lastPathComponent
    let name = pathExtension.isEmpty ? "\(stem)-\(suffix)" : "\(stem)-\(suffix).\(pathExtension)"
    return url.deletingLastPathComponent().appendingPathComponent(name)
}

/// A model loaded with `--resume`, checked against the network that `neuralkit mnist` trains.
struct ResumedMNISTModel {
    let model: Sequential
    let file: URL
    /// `sparse` or `categorical`, from the saved loss.
    let lossName: String

    /// Loads and checks the model, or throws `UsageError` naming `--resume`, the file and the fix.
    init(file: URL, files: MNISTTrainingFiles) throws {
        let path = file.path
        do {
            model = try Sequential.load(from: file)
        } catch {
            throw UsageError("--resume: cannot load the model: \(error); pass a model file written by --save or --checkpoint")
        }
        self.file = file

        let reference = ReferenceModels.mnistConvNet()
        try reference.build(inputShape: [28, 28, 1])
        let layerTypes = model.layers.map(\.typeName)
        let referenceTypes = reference.layers.map(\.typeName)
        guard model.inputShape == reference.inputShape, layerTypes == referenceTypes,
            model.parameters.map(\.value.shape) == reference.parameters.map(\.value.shape)
        else {
            let input = model.inputShape.map { formatShape($0, unknownBatch: true) } ?? "no input shape"
            throw UsageError(
                "--resume '\(path)' contains model '\(model.name)' with input \(input), layers \(layerTypes.joined(separator: ", ")) "
                    + "and \(model.parameterCount) parameters, but neuralkit mnist trains input (None, 28, 28, 1), layers "
                    + "\(referenceTypes.joined(separator: ", ")) and \(reference.parameterCount) parameters; "
                    + "pass a file written by neuralkit mnist --save or --checkpoint")
        }

        switch model.loss {
        case is SparseCategoricalCrossentropy: lossName = "sparse"
        case is CategoricalCrossentropy: lossName = "categorical"
        case nil:
            throw UsageError("--resume '\(path)' contains a model saved before compile, without a loss or optimizer state; "
                + "pass a file written by neuralkit mnist --save or --checkpoint")
        case let other?:
            throw UsageError("--resume '\(path)' contains a model compiled with \(other.name), but neuralkit mnist trains with "
                + "sparse or categorical crossentropy")
        }
        if let requested = files.lossOption, requested != lossName {
            throw UsageError(
                "--loss \(requested) does not match the model in '\(path)', which was trained with --loss \(lossName); "
                    + "omit --loss or pass --loss \(lossName)")
        }
        if let learningRate = files.learningRateOption {
            model.optimizer?.learningRate = learningRate
        }
    }

    /// Returns the 0-based epoch to continue at, and prints where training resumes.
    ///
    /// A model that Ctrl-C stopped inside an epoch continues that epoch at its next
    /// batch when this run has the same training samples and batch size, which is what
    /// `fit` checks. With other --limit, --batch-size or --validation-split values, that
    /// epoch starts again. A model saved after a whole epoch continues at the next one:
    /// its completed epochs are its optimizer steps divided by this run's steps per
    /// epoch, which is exact when those options are unchanged.
    ///
    /// - Throws: `UsageError` when the model already completed `epochs` epochs.
    func initialEpoch(trainingSamples: Int, batchSize: Int, validationSplit: Double, epochs: Int) throws -> Int {
        let trainCount = validationSplit > 0
            ? Int((Double(trainingSamples) * (1 - validationSplit)).rounded(.down))
            : trainingSamples
        let steps = max(1, trainCount / batchSize + (trainCount % batchSize == 0 ? 0 : 1))
        let iterations = model.optimizer?.iterations ?? 0

        if let position = model.continuableEpoch(trainingSamples: trainCount, batchSize: batchSize) {
            try requireEpochsLeft(completed: position.epoch, epochs: epochs, detail: "it stopped inside epoch \(position.epoch + 1)")
            print(
                "Resuming \(file.path) in epoch \(position.epoch + 1) of \(epochs) at batch \(position.completedBatches + 1) "
                    + "of \(position.batchesPerEpoch)")
            return position.epoch
        }

        let completed: Int
        if let position = model.unfinishedEpoch {
            completed = position.epoch
            try requireEpochsLeft(completed: completed, epochs: epochs, detail: "it stopped inside epoch \(completed + 1)")
            print(
                "Note: the model in \(file.path) stopped in epoch \(completed + 1) after batch \(position.completedBatches) of "
                    + "\(position.batchesPerEpoch), with other --limit, --batch-size or --validation-split values than this "
                    + "run, so epoch \(completed + 1) starts again from its first batch.")
        } else {
            completed = iterations / steps
            try requireEpochsLeft(
                completed: completed, epochs: epochs, detail: "\(iterations) optimizer steps at \(steps) per epoch")
            if iterations % steps != 0 {
                print(
                    "Note: the model in \(file.path) has \(iterations) optimizer steps, partway through epoch \(completed + 1) "
                        + "at \(steps) steps per epoch, so epoch \(completed + 1) starts again from its first batch. If the "
                        + "first run used other --limit, --batch-size or --validation-split values, pass those so that the "
                        + "epochs count correctly.")
            }
        }
        print("Resuming \(file.path) at epoch \(completed + 1) of \(epochs)")
        return completed
    }

    /// Throws `UsageError` when `epochs` leaves nothing to train after `completed` epochs.
    private func requireEpochsLeft(completed: Int, epochs: Int, detail: String) throws {
        guard completed < epochs else {
            throw UsageError(
                "--epochs \(epochs) leaves nothing to train, because the model in '\(file.path)' has completed \(completed) "
                    + "epochs (\(detail)); pass --epochs \(completed + 1) or more")
        }
    }
}

/// The end of a run that Ctrl-C stopped; `neuralkit mnist` exits with status 130.
struct MNISTTrainingInterrupted: Error, CustomStringConvertible {
    let description: String
}

/// Runs one `fit` call of `neuralkit mnist` with Ctrl-C handling, through an
/// interruption whose signal handler the caller installed: the first SIGINT stops after
/// the current batch, and a second one exits at once.
///
/// - Throws: `MNISTTrainingInterrupted` when Ctrl-C stopped training, after the
///   checkpoint callback saved the model, if `--checkpoint` was given.
func fitHandlingInterrupts(
    _ interruption: TrainingInterruption, checkpointFolder: URL?, _ fit: (TrainingInterruption) throws -> History
) throws -> History {
    let history = try fit(interruption)
    guard let stop = interruption.stopPoint else { return history }

    let place = stop.completedBatches == stop.batchesPerEpoch
        ? "after epoch \(stop.epoch + 1)"
        : "in epoch \(stop.epoch + 1) after batch \(stop.completedBatches) of \(stop.batchesPerEpoch)"
    if let checkpointFolder {
        let last = checkpointFolder.appendingPathComponent("last.nk").path
        throw MNISTTrainingInterrupted(
            description: "training interrupted \(place); the model is saved in \(last). To continue, add "
                + "--resume \(last) to the same command")
    }
    throw MNISTTrainingInterrupted(
        description: "training interrupted \(place); nothing was saved. Pass --checkpoint DIR to save the model when interrupted")
}
