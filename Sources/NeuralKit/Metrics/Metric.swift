/// A quantity tracked over an epoch, as Keras' `keras.metrics.Metric`: `update` adds a
/// batch, `result` is the value so far, `reset` starts over.
public protocol Metric: AnyObject {
    /// The key in logs and `History`, e.g. `accuracy`.
    var name: String { get }
    func reset()
    func update(targets: Targets, predictions: Tensor<Float>) throws
    var result: Float { get }
}

/// A running mean of per-element hits (1) and misses (0), shared by the accuracy metrics.
public class MeanHitRate {
    public var name: String
    private var hits = 0.0
    private var total = 0.0

    init(name: String) {
        self.name = name
    }

    public func reset() {
        hits = 0
        total = 0
    }

    public var result: Float { total > 0 ? Float(hits / total) : 0 }

    func add(hits newHits: Int, total newTotal: Int) {
        hits += Double(newHits)
        total += Double(newTotal)
    }
}

/// The fraction of samples whose highest-scoring class is the integer label, as
/// Keras' `SparseCategoricalAccuracy`. Labels have the prediction shape without the
/// class axis, or with a trailing axis of 1.
public final class SparseCategoricalAccuracy: MeanHitRate, Metric {
    /// A label left out of the accuracy, as `ignoreClass` leaves it out of the loss; nil for none.
    public let ignoreClass: Int?

    public init(ignoreClass: Int? = nil, name: String = "sparse_categorical_accuracy") {
        self.ignoreClass = ignoreClass
        super.init(name: name)
    }

    public func update(targets: Targets, predictions: Tensor<Float>) throws {
        let labels = try sparseLabels(targets, predictions: predictions, metric: name, ignoreClass: ignoreClass)
        let classes = predictions.shape.last ?? 1
        var hits = 0
        var counted = 0
        predictions.scalars.withUnsafeBufferPointer { p in
            for (e, label) in labels.enumerated() where label != ignoreClass {
                counted += 1
                if argmax(p.baseAddress! + e * classes, count: classes) == label { hits += 1 }
            }
        }
        add(hits: hits, total: counted)
    }
}

/// The fraction of samples whose highest-scoring class is the highest-valued target,
/// as Keras' `CategoricalAccuracy`. Targets have the prediction shape.
public final class CategoricalAccuracy: MeanHitRate, Metric {
    public override init(name: String = "categorical_accuracy") {
        super.init(name: name)
    }

    public func update(targets: Targets, predictions: Tensor<Float>) throws {
        guard targets.shape == predictions.shape else {
            throw NeuralKitError.incompatibleShapes(
                "\(name): targets have shape \(formatShape(targets.shape)) but predictions have shape "
                    + "\(formatShape(predictions.shape)); they must be equal")
        }
        let classes = predictions.shape.last ?? 1
        let rows = predictions.count / max(classes, 1)
        let values: [Float]
        switch targets {
        case .values(let tensor): values = tensor.scalars
        case .classIndices(let tensor): values = tensor.scalars.map(Float.init)
        }
        var hits = 0
        predictions.scalars.withUnsafeBufferPointer { p in
            values.withUnsafeBufferPointer { t in
                for r in 0..<rows
                where argmax(p.baseAddress! + r * classes, count: classes) == argmax(t.baseAddress! + r * classes, count: classes) {
                    hits += 1
                }
            }
        }
        add(hits: hits, total: rows)
    }
}

/// The fraction of samples whose label is among the `k` highest-scoring classes, as
/// Keras' `SparseTopKCategoricalAccuracy`. A class tied with the k-th score counts as
/// among them, as TensorFlow's `in_top_k` does.
public final class SparseTopKCategoricalAccuracy: MeanHitRate, Metric {
    public let k: Int

    /// - Parameter k: how many of the top classes count as a hit; positive; default 5.
    public init(k: Int = 5, name: String = "sparse_top_k_categorical_accuracy") {
        checkPrecondition(k > 0, "SparseTopKCategoricalAccuracy: k must be positive, got \(k)")
        self.k = k
        super.init(name: name)
    }

    public func update(targets: Targets, predictions: Tensor<Float>) throws {
        let labels = try sparseLabels(targets, predictions: predictions, metric: name)
        let classes = predictions.shape.last ?? 1
        var hits = 0
        predictions.scalars.withUnsafeBufferPointer { p in
            for (e, label) in labels.enumerated() {
                let row = p.baseAddress! + e * classes
                let score = row[label]
                var higher = 0
                for c in 0..<classes where row[c] > score { higher += 1 }
                if higher < k && score.isFinite { hits += 1 }
            }
        }
        add(hits: hits, total: labels.count)
    }
}

/// The fraction of elements where `prediction > threshold` matches `target > threshold`,
/// as Keras' `BinaryAccuracy`.
public final class BinaryAccuracy: MeanHitRate, Metric {
    public let threshold: Float

    public init(threshold: Float = 0.5, name: String = "binary_accuracy") {
        self.threshold = threshold
        super.init(name: name)
    }

    public func update(targets: Targets, predictions: Tensor<Float>) throws {
        let values: [Float]
        switch targets {
        case .values(let tensor): values = tensor.scalars
        case .classIndices(let tensor): values = tensor.scalars.map(Float.init)
        }
        guard values.count == predictions.count else {
            throw NeuralKitError.incompatibleShapes(
                "\(name): targets have shape \(formatShape(targets.shape)) but predictions have shape "
                    + "\(formatShape(predictions.shape)); they must have the same number of elements")
        }
        var hits = 0
        for (target, prediction) in zip(values, predictions.scalars) where (target > threshold) == (prediction > threshold) {
            hits += 1
        }
        add(hits: hits, total: values.count)
    }
}

/// Returns the index of the largest of `count` values, the first one on ties, as `argmax` in Keras.
func argmax(_ row: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    for c in 1..<max(count, 1) where row[c] > row[best] { best = c }
    return best
}

/// Checks and converts sparse labels for an accuracy metric.
private func sparseLabels(_ targets: Targets, predictions: Tensor<Float>, metric: String, ignoreClass: Int? = nil) throws -> [Int] {
    let loss = SparseCategoricalCrossentropy(ignoreClass: ignoreClass)
    do {
        _ = try loss.labelCount(targetShape: targets.shape, predictionShape: predictions.shape)
        return try loss.classLabels(targets, classes: predictions.shape.last ?? 0)
    } catch let error as NeuralKitError {
        throw error.replacingSubject(loss.name, with: metric)
    }
}

extension NeuralKitError {
    /// Returns the same error with its message naming `subject` instead of `original`.
    func replacingSubject(_ original: String, with subject: String) -> NeuralKitError {
        switch self {
        case .invalidArgument(let m): return .invalidArgument(m.replacingOccurrences(of: original, with: subject))
        case .incompatibleShapes(let m): return .incompatibleShapes(m.replacingOccurrences(of: original, with: subject))
        case .invalidLabels(let m): return .invalidLabels(m.replacingOccurrences(of: original, with: subject))
        case .nonFiniteValue(let m): return .nonFiniteValue(m.replacingOccurrences(of: original, with: subject))
        case .notReady(let m): return .notReady(m.replacingOccurrences(of: original, with: subject))
        case .invalidData: return self
        }
    }
}

/// Resolves Keras' metric strings for a loss and a final output size:
/// `"accuracy"` (or `"acc"`) becomes sparse, categorical or binary accuracy by the loss,
/// keeping the name `accuracy` as Keras does.
func resolveMetric(_ name: String, loss: any Loss, outputUnits: Int) throws -> any Metric {
    switch name {
    case "accuracy", "acc":
        if let sparse = loss as? SparseCategoricalCrossentropy {
            return SparseCategoricalAccuracy(ignoreClass: sparse.ignoreClass, name: name)
        }
        if loss is CategoricalCrossentropy { return CategoricalAccuracy(name: name) }
        if outputUnits == 1 { return BinaryAccuracy(name: name) }
        return CategoricalAccuracy(name: name)
    case "sparse_categorical_accuracy":
        return SparseCategoricalAccuracy(ignoreClass: (loss as? SparseCategoricalCrossentropy)?.ignoreClass)
    case "categorical_accuracy": return CategoricalAccuracy()
    case "binary_accuracy": return BinaryAccuracy()
    case "sparse_top_k_categorical_accuracy": return SparseTopKCategoricalAccuracy()
    default:
        throw NeuralKitError.invalidArgument(
            "unknown metric '\(name)'; use accuracy, sparse_categorical_accuracy, categorical_accuracy, binary_accuracy "
                + "or sparse_top_k_categorical_accuracy, or pass a Metric object")
    }
}
