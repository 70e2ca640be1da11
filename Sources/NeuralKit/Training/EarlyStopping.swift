import Foundation

/// Stops training when a monitored quantity stops improving, as Keras 3's `EarlyStopping`.
///
/// At the end of each epoch from `startFromEpoch` on, the value of `monitor` counts as
/// an improvement when it beats the best value so far by more than `minDelta`. Training
/// stops at the end of an epoch without improvement once `patience` epochs have passed
/// since the last improvement, but never at the end of epoch 0. With a `baseline`, an
/// improvement resets that count only if it also beats the baseline. An epoch without
/// improvement then stops training once `patience` epochs have passed since the first
/// monitored epoch, unless some epoch beat the baseline.
///
/// With `restoreBestWeights`, the model gets the weights of the best epoch when `fit`
/// ends, whether or not this callback stopped it, as Keras 3 does. If no epoch was
/// monitored, the weights stay as they are.
///
/// ```swift
/// let earlyStopping = try EarlyStopping(monitor: "val_loss", patience: 3, restoreBestWeights: true)
/// try model.fit(x: x, y: y, epochs: 100, validationSplit: 0.2, callbacks: [earlyStopping])
/// ```
public final class EarlyStopping: Callback {
    public let monitor: String
    /// The smallest change that counts as an improvement; non-negative.
    public let minDelta: Float
    /// Epochs without improvement after which training stops.
    public let patience: Int
    public let mode: MonitorMode
    public let restoreBestWeights: Bool
    /// A value the monitored quantity must beat to reset the patience count; nil for none.
    public let baseline: Float?
    /// Epochs (0-based indices below this value) that are not monitored, for a warm-up.
    public let startFromEpoch: Int
    /// Whether to print the epoch that stopped training and the epoch whose weights
    /// were restored, as Keras' `verbose=1`.
    public let verbose: Bool

    /// The number of monitored epochs since the last improvement that reset the count.
    public private(set) var wait = 0
    /// The 0-based epoch after which this callback stopped training, or nil.
    public private(set) var stoppedEpoch: Int?
    /// The best monitored value in the current `fit`, or nil before the first monitored epoch.
    public private(set) var best: Float?
    /// The 0-based epoch of `best`.
    public private(set) var bestEpoch = 0

    private var quantity: MonitoredQuantity
    private weak var model: Sequential?
    private var bestWeights: [Tensor<Float>]?
    private var warnedAboutMissingMonitor = false

    /// - Parameters:
    ///   - monitor: the log key to watch; default `val_loss`.
    ///   - minDelta: the smallest change that counts as an improvement; its absolute value
    ///     is used, as in Keras; default 0.
    ///   - patience: epochs without improvement before stopping; non-negative; default 0.
    ///   - mode: whether `monitor` improves by decreasing or increasing; `.auto` infers
    ///     it from the name (see `MonitorMode`).
    ///   - restoreBestWeights: restore the best epoch's weights when `fit` ends.
    ///   - baseline: a value an improvement must also beat to reset the patience count.
    ///   - startFromEpoch: the number of epochs, counted from epoch 0, that are not
    ///     monitored; non-negative; default 0.
    ///   - verbose: print the stopping and restoring epochs.
    /// - Throws: `NeuralKitError.invalidArgument` for a negative `patience` or
    ///   `startFromEpoch`, or a non-finite `minDelta` or `baseline`.
    public init(
        monitor: String = "val_loss", minDelta: Float = 0, patience: Int = 0, mode: MonitorMode = .auto,
        restoreBestWeights: Bool = false, baseline: Float? = nil, startFromEpoch: Int = 0, verbose: Bool = false
    ) throws {
        guard patience >= 0 else {
            throw NeuralKitError.invalidArgument("EarlyStopping patience must be a non-negative number of epochs, got \(patience)")
        }
        guard startFromEpoch >= 0 else {
            throw NeuralKitError.invalidArgument("EarlyStopping startFromEpoch must be non-negative, got \(startFromEpoch)")
        }
        guard minDelta.isFinite else {
            throw NeuralKitError.invalidArgument("EarlyStopping minDelta must be a finite number, got \(minDelta)")
        }
        if let baseline, !baseline.isFinite {
            throw NeuralKitError.invalidArgument("EarlyStopping baseline must be a finite number or nil, got \(baseline)")
        }
        self.monitor = monitor
        self.minDelta = abs(minDelta)
        self.patience = patience
        self.mode = mode
        self.restoreBestWeights = restoreBestWeights
        self.baseline = baseline
        self.startFromEpoch = startFromEpoch
        self.verbose = verbose
        self.quantity = MonitoredQuantity(key: monitor, mode: mode, minDelta: abs(minDelta))
    }

    public func setModel(_ model: Sequential) {
        self.model = model
    }

    /// Resets the state, so one instance can serve several `fit` calls. Unlike Keras,
    /// this also resets `best`.
    public func trainBegin() throws {
        wait = 0
        stoppedEpoch = nil
        best = nil
        bestEpoch = 0
        bestWeights = nil
    }

    public func epochEnd(_ epoch: Int, logs: [String: Float]) throws {
        guard let current = logs[monitor] else {
            if !warnedAboutMissingMonitor {
                warnedAboutMissingMonitor = true
                printWarning(
                    "EarlyStopping monitors '\(monitor)', but the logs contain \(describeKeys(logs)); it will not stop training. "
                        + "Pass validation data for val_ keys, or set monitor to one of the logged keys")
            }
            return
        }
        guard epoch >= startFromEpoch, let model else { return }
        if restoreBestWeights && bestWeights == nil {
            // Until an epoch improves, the first monitored epoch's weights are the best.
            bestWeights = model.parameters.map(\.value)
            bestEpoch = epoch
        }

        wait += 1
        let maximizing = quantity.maximizes(model: model)
        if quantity.isImprovement(current, over: best, maximizing: maximizing) {
            best = current
            bestEpoch = epoch
            if restoreBestWeights { bestWeights = model.parameters.map(\.value) }
            if baseline == nil || quantity.isImprovement(current, over: baseline, maximizing: maximizing) {
                wait = 0
            }
            return
        }
        if wait >= patience && epoch > 0 {
            stoppedEpoch = epoch
            model.stopTraining = true
        }
    }

    public func trainEnd(logs: [String: Float]) throws {
        if let stoppedEpoch, verbose { print("Epoch \(stoppedEpoch + 1): early stopping") }
        guard restoreBestWeights, let bestWeights, let model else { return }
        if verbose { print("Restoring model weights from the end of the best epoch: \(bestEpoch + 1).") }
        for (parameter, value) in zip(model.parameters, bestWeights) {
            parameter.value = value
        }
    }
}
