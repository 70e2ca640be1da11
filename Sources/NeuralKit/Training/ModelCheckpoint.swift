import Foundation

/// Saves the model at the end of each epoch, as Keras' `ModelCheckpoint` with
/// `save_freq="epoch"`.
///
/// The file name comes from `filepath`, whose `{epoch}` field is the 1-based epoch and
/// whose other fields are log keys, with Python's format specs:
/// `"checkpoints/epoch-{epoch:02d}-{val_loss:.4f}.nk"`. A field that names a key
/// missing from the epoch's logs makes `fit` throw. Missing folders are created.
///
/// Files are written with `save(to:)`, or `saveWeights(to:)` when `saveWeightsOnly` is
/// true, so each file is replaced atomically.
///
/// ```swift
/// let checkpoint = try ModelCheckpoint(filepath: "best.nk", monitor: "val_accuracy", saveBestOnly: true)
/// try model.fit(x: x, y: y, epochs: 10, validationSplit: 0.2, callbacks: [checkpoint])
/// ```
public final class ModelCheckpoint: Callback {
    public let filepath: String
    /// The log key that `saveBestOnly` compares, such as `val_loss`.
    public let monitor: String
    /// Whether a file is written only when `monitor` improves on the best value so far.
    public let saveBestOnly: Bool
    public let mode: MonitorMode
    public let saveWeightsOnly: Bool
    /// Whether an interruption through `TrainingInterruption` saves the model in its
    /// state at that moment, partway through an epoch.
    public let saveOnInterruption: Bool
    /// Whether to print a line for each save and each epoch without improvement, as
    /// Keras' `verbose=1`. Saves on interruption are always printed.
    public let verbose: Bool
    /// The best value of `monitor` seen so far, or the initial threshold; nil before
    /// the first comparison. It is kept across `fit` calls, as in Keras.
    public private(set) var best: Float?
    /// The file written last, or nil before the first save.
    public private(set) var lastSavedURL: URL?

    private let pattern: FilepathPattern
    private weak var model: Sequential?
    private var warnedAboutMissingMonitor = false

    /// - Parameters:
    ///   - filepath: the file to write, with optional `{epoch}` and log-key fields.
    ///   - monitor: the log key for `saveBestOnly`; default `val_loss`.
    ///   - saveBestOnly: write only when `monitor` improves. If the logs lack `monitor`,
    ///     a warning is printed once and every epoch is saved, as in Keras.
    ///   - mode: whether `monitor` improves by decreasing or increasing; `.auto` infers
    ///     it from the name (see `MonitorMode`).
    ///   - saveWeightsOnly: write the weights alone, for `loadWeights(from:)`.
    ///   - initialValueThreshold: a value that the first saved epoch must beat when
    ///     `saveBestOnly` is true; nil for none.
    ///   - saveOnInterruption: also save when a `TrainingInterruption` stops `fit`. The
    ///     file name then uses the interrupted epoch, so `filepath` may contain no field
    ///     but `{epoch}`. It cannot be combined with `saveBestOnly`, whose file must keep
    ///     the best model.
    ///   - verbose: print a line for each save, as Keras' `verbose=1`.
    /// - Throws: `NeuralKitError.invalidArgument` for an empty or invalid `filepath` or
    ///   an invalid combination.
    public init(
        filepath: String, monitor: String = "val_loss", saveBestOnly: Bool = false, mode: MonitorMode = .auto,
        saveWeightsOnly: Bool = false, initialValueThreshold: Float? = nil, saveOnInterruption: Bool = false,
        verbose: Bool = false
    ) throws {
        guard !filepath.isEmpty else {
            throw NeuralKitError.invalidArgument("ModelCheckpoint filepath is empty; pass a file path such as \"checkpoints/epoch-{epoch:02d}.nk\"")
        }
        pattern = try FilepathPattern(filepath)
        if saveOnInterruption {
            guard !saveBestOnly else {
                throw NeuralKitError.invalidArgument(
                    "ModelCheckpoint: saveOnInterruption cannot be combined with saveBestOnly, because an interrupted model "
                        + "would replace the best one; add a second ModelCheckpoint with saveOnInterruption for the interrupted model")
            }
            if let field = pattern.fieldNames.first(where: { $0 != "epoch" }) {
                throw NeuralKitError.invalidArgument(
                    "ModelCheckpoint filepath '\(filepath)' uses {\(field)}, but with saveOnInterruption it may contain only "
                        + "{epoch}, because an interrupted epoch has no complete logs")
            }
        }
        self.filepath = filepath
        self.monitor = monitor
        self.saveBestOnly = saveBestOnly
        self.mode = mode
        self.saveWeightsOnly = saveWeightsOnly
        self.saveOnInterruption = saveOnInterruption
        self.verbose = verbose
        self.best = initialValueThreshold
    }

    public func setModel(_ model: Sequential) {
        self.model = model
    }

    public func epochEnd(_ epoch: Int, logs: [String: Float]) throws {
        guard let model else { return }
        let url = try fileURL(epoch: epoch, logs: logs)
        if saveBestOnly {
            guard let current = logs[monitor] else {
                if !warnedAboutMissingMonitor {
                    warnedAboutMissingMonitor = true
                    printWarning(
                        "ModelCheckpoint can save the best model only when the logs contain '\(monitor)', but they contain "
                            + "\(describeKeys(logs)); saving every epoch. Pass validation data for val_ keys, or set monitor")
                }
                try save(model, to: url)
                return
            }
            let quantity = MonitoredQuantity(key: monitor, mode: mode, minDelta: 0)
            let bestText = best.map { String(format: "%.5f", Double($0)) } ?? "None"
            guard quantity.isImprovement(current, over: best, maximizing: quantity.maximizes(model: model)) else {
                if verbose { print("Epoch \(epoch + 1): \(monitor) did not improve from \(bestText)") }
                return
            }
            if verbose {
                print("Epoch \(epoch + 1): \(monitor) improved from \(bestText) to \(String(format: "%.5f", Double(current))), saving model to \(url.path)")
            }
            best = current
        } else if verbose {
            print("Epoch \(epoch + 1): saving model to \(url.path)")
        }
        try save(model, to: url)
    }

    public func trainInterrupted(epoch: Int, completedBatches: Int, logs: [String: Float]) throws {
        guard saveOnInterruption, let model else { return }
        let url = try fileURL(epoch: epoch, logs: [:])
        try save(model, to: url)
        print("Epoch \(epoch + 1): training interrupted after batch \(completedBatches); saved the model to \(url.path)")
    }

    private func fileURL(epoch: Int, logs: [String: Float]) throws -> URL {
        var values = logs.mapValues { FilepathPattern.Value.float(Double($0)) }
        values["epoch"] = .integer(epoch + 1)
        let path = try pattern.format(values)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw NeuralKitError.invalidArgument(
                "ModelCheckpoint filepath '\(path)' is an existing folder; pass a file path such as \(path)/model.nk")
        }
        return URL(fileURLWithPath: path)
    }

    private func save(_ model: Sequential, to url: URL) throws {
        let folder = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw NeuralKitError.invalidData(
                file: folder.path, reason: "cannot create the folder for ModelCheckpoint: \(error.localizedDescription)")
        }
        if saveWeightsOnly {
            try model.saveWeights(to: url)
        } else {
            try model.save(to: url)
        }
        lastSavedURL = url
    }
}
