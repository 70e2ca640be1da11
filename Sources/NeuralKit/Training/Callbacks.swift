import Foundation

/// An object that `fit` notifies as training progresses, as Keras' `keras.callbacks.Callback`.
///
/// Every hook has a no-op default, so a callback implements only the hooks it needs.
/// `fit` calls `setModel` first, then `trainBegin`, and then for each epoch
/// `epochBegin`, `batchBegin` and `batchEnd` for each batch, and `epochEnd`. It calls
/// `trainEnd` last, unless a hook or a training step throws, in which case `fit`
/// rethrows at once.
///
/// Epochs and batches are counted from 0, as in Keras. Logs map `loss`, each metric
/// name and their `val_` forms to their values. Each hook receives its own copy of the
/// logs. Unlike in Keras, a callback cannot add entries that later callbacks or
/// `History` see.
///
/// To end training, a callback sets `model.stopTraining = true`, as Keras' `stop_training`.
///
/// A method whose signature differs from the requirement (a different label or type)
/// does not implement the hook, and `fit` silently calls the no-op default.
public protocol Callback: AnyObject {
    /// Receives the model that `fit` trains, before any other hook.
    func setModel(_ model: Sequential)
    /// Called once before the first epoch.
    func trainBegin() throws
    /// Called once after the last epoch, with the last complete epoch's logs (empty
    /// when no epoch completed). Also called after an interruption, after `trainInterrupted`.
    func trainEnd(logs: [String: Float]) throws
    /// Called at the start of each epoch, before shuffling.
    func epochBegin(_ epoch: Int) throws
    /// Called after each epoch with its training logs and, when `fit` validates, the
    /// `val_` logs.
    func epochEnd(_ epoch: Int, logs: [String: Float]) throws
    /// Called before each training step.
    func batchBegin(_ batch: Int) throws
    /// Called after each training step with the loss and metrics averaged over the
    /// epoch's batches so far.
    func batchEnd(_ batch: Int, logs: [String: Float]) throws
    /// Called when a `TrainingInterruption` stops `fit` after batch `completedBatches`
    /// of `epoch`. `completedBatches` equals the steps per epoch when the request came
    /// after the epoch's last batch. `logs` are the epoch's training logs so far,
    /// without validation. Keras has no such hook.
    func trainInterrupted(epoch: Int, completedBatches: Int, logs: [String: Float]) throws
}

extension Callback {
    public func setModel(_ model: Sequential) {}
    public func trainBegin() throws {}
    public func trainEnd(logs: [String: Float]) throws {}
    public func epochBegin(_ epoch: Int) throws {}
    public func epochEnd(_ epoch: Int, logs: [String: Float]) throws {}
    public func batchBegin(_ batch: Int) throws {}
    public func batchEnd(_ batch: Int, logs: [String: Float]) throws {}
    public func trainInterrupted(epoch: Int, completedBatches: Int, logs: [String: Float]) throws {}
}

/// Whether a monitored quantity improves by decreasing or increasing, as Keras' `mode`.
public enum MonitorMode: String, Sendable, CaseIterable {
    /// Lower is better for `loss` and higher for accuracy metrics, as `MonitoredQuantity` describes.
    case auto
    case min
    case max
}

/// A log key that a callback watches for improvement, with Keras' comparison rules.
struct MonitoredQuantity {
    let key: String
    let mode: MonitorMode
    /// The smallest change that counts as an improvement; non-negative.
    let minDelta: Float

    /// Returns whether higher values are better.
    ///
    /// With `.auto`, `loss` and `val_loss` decrease. A key naming one of the model's
    /// metrics, with or without `val_`, increases when the metric is an accuracy, as
    /// all NeuralKit metrics are. Other keys increase when they contain "acc" or "auc"
    /// or start with "fmeasure", and decrease otherwise.
    /// NOTE: recent Keras 3 releases raise an error for keys they cannot classify;
    /// NeuralKit minimizes them, as older Keras releases did.
    func maximizes(model: Sequential?) -> Bool {
        switch mode {
        case .min: return false
        case .max: return true
        case .auto: break
        }
        let name = key.hasPrefix("val_") ? String(key.dropFirst(4)) : key
        if name == "loss" { return false }
        if let metric = model?.metrics.first(where: { $0.name == name }), metric is MeanHitRate {
            return true
        }
        return name.contains("acc") || name.contains("auc") || name.hasPrefix("fmeasure")
    }

    /// Returns whether `value` beats `reference` by more than `minDelta` in the better
    /// direction. Any value but NaN beats a nil reference, and NaN beats nothing.
    func isImprovement(_ value: Float, over reference: Float?, maximizing: Bool) -> Bool {
        guard let reference else { return !value.isNaN }
        return maximizing ? value - minDelta > reference : value + minDelta < reference
    }
}

/// Joins the keys of `logs` in sorted order, for messages.
func describeKeys(_ logs: [String: Float]) -> String {
    logs.isEmpty ? "no keys" : logs.keys.sorted().joined(separator: ", ")
}

/// Calls every callback's hook in order.
struct CallbackList {
    let callbacks: [any Callback]

    init(_ callbacks: [any Callback], model: Sequential) {
        self.callbacks = callbacks
        for callback in callbacks { callback.setModel(model) }
    }

    var isEmpty: Bool { callbacks.isEmpty }

    func trainBegin() throws {
        for callback in callbacks { try callback.trainBegin() }
    }

    func trainEnd(logs: [String: Float]) throws {
        for callback in callbacks { try callback.trainEnd(logs: logs) }
    }

    func epochBegin(_ epoch: Int) throws {
        for callback in callbacks { try callback.epochBegin(epoch) }
    }

    func epochEnd(_ epoch: Int, logs: [String: Float]) throws {
        for callback in callbacks { try callback.epochEnd(epoch, logs: logs) }
    }

    func batchBegin(_ batch: Int) throws {
        for callback in callbacks { try callback.batchBegin(batch) }
    }

    func batchEnd(_ batch: Int, logs: [String: Float]) throws {
        for callback in callbacks { try callback.batchEnd(batch, logs: logs) }
    }

    func trainInterrupted(epoch: Int, completedBatches: Int, logs: [String: Float]) throws {
        for callback in callbacks {
            try callback.trainInterrupted(epoch: epoch, completedBatches: completedBatches, logs: logs)
        }
    }
}

/// Converts ordered logs to the dictionary that callbacks receive. The first value of
/// a repeated key wins.
func logsDictionary(_ logs: [(String, Float)]) -> [String: Float] {
    Dictionary(logs, uniquingKeysWith: { first, _ in first })
}
