/// The per-epoch logs of `fit`, as Keras' `History`: `history["loss"]`,
/// `history["val_accuracy"]`, ...
public struct History: Sendable {
    /// The epochs run, counted from 0 as in Keras.
    public var epoch: [Int] = []
    /// One value per epoch for each key, in the order `keys` lists them.
    public var history: [String: [Float]] = [:]
    /// The keys in the order Keras prints them: `loss`, the metrics, then their `val_` forms.
    public var keys: [String] = []
    /// Wall-clock seconds of each epoch, training and validation together.
    public var epochSeconds: [Double] = []

    public init() {}

    mutating func append(epoch index: Int, logs: [(String, Float)], seconds: Double) {
        epoch.append(index)
        epochSeconds.append(seconds)
        for (key, value) in logs {
            if history[key] == nil { keys.append(key) }
            history[key, default: []].append(value)
        }
    }

    /// The values of `key`, or nil if `fit` did not log it.
    public subscript(key: String) -> [Float]? { history[key] }
}

/// How much `fit` and `evaluate` print, as Keras' `verbose`.
public enum Verbosity: Int, Sendable, CaseIterable {
    /// Nothing.
    case silent = 0
    /// A progress bar updated in place on a terminal; one line per epoch when output is
    /// not a terminal.
    case progressBar = 1
    /// One line per epoch.
    case epochLines = 2
}
