import Foundation

/// The combination of a loss's per-element values into the value it returns, as Keras'
/// `reduction` argument.
public enum Reduction: String, Sendable {
    /// The weighted sum divided by the number of elements (Keras' default). Elements
    /// left out by `ignoreClass` count neither in the sum nor in the divisor, and a
    /// batch where every element is left out gives 0.
    case sumOverBatchSize = "sum_over_batch_size"
    /// The weighted sum.
    case sum
    /// No reduction: one value per element. Not usable for training.
    case none
}

/// The per-element losses of a batch before weighting and reduction, with the
/// gradient of each element's loss with respect to the predictions.
public struct ElementLosses {
    /// One loss per element; `shape` is the prediction shape without the class axis.
    public var values: [Float]
    public var shape: [Int]
    /// False where an element is left out (`ignoreClass`); nil when none are.
    public var included: [Bool]?
    /// Same shape as the predictions: row `e` contains the gradient of `values[e]`.
    public var gradient: Tensor<Float>
}

/// A loss function, as Keras' `keras.losses.Loss`: compares targets with predictions.
public protocol Loss {
    /// The name used in messages, e.g. `sparse_categorical_crossentropy`.
    var name: String { get }
    /// Whether predictions are logits (true) or probabilities (false).
    var fromLogits: Bool { get }
    var reduction: Reduction { get }

    /// Throws when targets of `targetShape` cannot be compared with predictions of
    /// `predictionShape` (both with the batch axis), naming both shapes and the fix.
    func validate(targets: Targets, predictionShape: [Int]) throws

    /// Computes per-element losses and gradients. With `predictionsAreLogits` the
    /// predictions are treated as logits regardless of `fromLogits`, because a model
    /// ending in softmax passes its logits here, as Keras does.
    func elementLosses(targets: Targets, predictions: Tensor<Float>, predictionsAreLogits: Bool) throws -> ElementLosses

    /// Whether a model ending in softmax may hand this loss its logits when
    /// `fromLogits` is false. True for the crossentropies, as in Keras with TensorFlow;
    /// the result is the same loss without the clip's loss of precision.
    var computesFromSoftmaxLogits: Bool { get }
}

extension Loss {
    public var computesFromSoftmaxLogits: Bool { false }
}

extension Loss {
    /// Computes the loss as Keras' `loss(y_true, y_pred, sample_weight)`.
    ///
    /// - Parameters:
    ///   - sampleWeight: one weight per sample `(N)`, or one per element.
    /// - Returns: a scalar tensor (shape `[]`) for `.sum` and `.sumOverBatchSize`, or
    ///   one value per element for `.none`.
    public func callAsFunction(
        _ targets: some TargetConvertible, _ predictions: Tensor<Float>, sampleWeight: Tensor<Float>? = nil
    ) throws -> Tensor<Float> {
        try validate(targets: targets.targets, predictionShape: predictions.shape)
        let elements = try elementLosses(targets: targets.targets, predictions: predictions, predictionsAreLogits: fromLogits)
        return try reduce(elements, sampleWeight: sampleWeight?.scalars, reduction: reduction).value
    }
}

/// Weights and reduces per-element losses, and scales their gradients to match.
///
/// - Returns: the reduced value, and the gradient of that value with respect to the
///   predictions (for `.none`, the gradient of the sum).
func reduce(
    _ elements: ElementLosses, sampleWeight: [Float]?, reduction: Reduction
) throws -> (value: Tensor<Float>, gradient: Tensor<Float>) {
    let elementCount = elements.values.count
    let batch = elements.shape.first ?? 1
    let elementsPerSample = batch > 0 ? elementCount / batch : 0
    if let sampleWeight {
        guard sampleWeight.count == batch || sampleWeight.count == elementCount else {
            throw NeuralKitError.incompatibleShapes(
                "sampleWeight has \(sampleWeight.count) values, but the batch has \(batch) samples"
                    + (elementsPerSample > 1 ? " and \(elementCount) elements" : "")
                    + "; pass one weight per sample")
        }
    }

    var weights = [Float](repeating: 1, count: elementCount)
    var includedCount = elementCount
    for e in 0..<elementCount {
        if let sampleWeight {
            weights[e] = sampleWeight.count == elementCount ? sampleWeight[e] : sampleWeight[e / elementsPerSample]
        }
        if let included = elements.included, !included[e] {
            weights[e] = 0
            includedCount -= 1
        }
    }

    let value: Tensor<Float>
    var gradientScale = weights
    switch reduction {
    case .none:
        value = Tensor(shape: elements.shape, scalars: zip(weights, elements.values).map { $0 * $1 })
    case .sum:
        value = Tensor(shape: [], scalars: [weightedSum(elements.values, weights)])
    case .sumOverBatchSize:
        let divisor = Float(includedCount)
        let total = includedCount > 0 ? weightedSum(elements.values, weights) / divisor : 0
        value = Tensor(shape: [], scalars: [total])
        gradientScale = weights.map { includedCount > 0 ? $0 / divisor : 0 }
    }

    var gradient = elements.gradient
    let classes = elementCount > 0 ? gradient.count / elementCount : 0
    gradient.scalars.withUnsafeMutableBufferPointer { g in
        for e in 0..<elementCount {
            let scale = gradientScale[e]
            for c in 0..<classes { g[e * classes + c] *= scale }
        }
    }
    return (value, gradient)
}

/// Sums `values[i] * weights[i]` in Double, which keeps rounding error small for large
/// batches. Elements with weight 0 are skipped, so an ignored NaN cannot leak in.
private func weightedSum(_ values: [Float], _ weights: [Float]) -> Float {
    var total = 0.0
    for (value, weight) in zip(values, weights) where weight != 0 {
        total += Double(value) * Double(weight)
    }
    return Float(total)
}

/// Keras' clipping bound for probabilities (`keras.backend.epsilon()`).
let probabilityEpsilon: Float = 1e-7

/// Throws when predictions contain NaN or infinity, naming the first position.
func requireFinite(_ predictions: Tensor<Float>, lossName: String) throws {
    if let index = predictions.scalars.firstIndex(where: { !$0.isFinite }) {
        throw NeuralKitError.nonFiniteValue(
            "\(lossName): predictions contain \(predictions.scalars[index]) at \(formatIndex(index, shape: predictions.shape)); "
                + "check the inputs for NaN or infinity, or lower the learning rate if training diverged")
    }
}

/// Returns the advice to add `Flatten()` when the targets look like one value per sample
/// (rank `perSampleRank`, same batch) but the predictions kept spatial axes, as when a
/// Dense layer follows a convolution directly; otherwise an empty string.
func missingFlattenHint(targetShape: [Int], predictionShape: [Int], perSampleRank: Int) -> String {
    guard predictionShape.count > 2, targetShape.count == perSampleRank, targetShape.first == predictionShape.first,
        let classes = predictionShape.last
    else { return "" }
    return "; add Flatten() before the first Dense layer so that predictions have shape (\(predictionShape[0]), \(classes))"
}

/// Formats a flat row-major index as a multi-index: `(1, 2)`.
func formatIndex(_ flatIndex: Int, shape: [Int]) -> String {
    var remainder = flatIndex
    var parts = [Int](repeating: 0, count: shape.count)
    for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] > 0 {
        parts[axis] = remainder % shape[axis]
        remainder /= shape[axis]
    }
    return "index " + formatShape(parts).replacingOccurrences(of: ",)", with: ")")
}

/// Log of the sum of exponentials of a row, shifted by its maximum so that large
/// logits neither overflow nor lose precision.
func logSumExp(_ row: UnsafePointer<Float>, count: Int) -> (value: Float, maximum: Float) {
    var maximum = -Float.infinity
    for c in 0..<count { maximum = max(maximum, row[c]) }
    var sum: Float = 0
    for c in 0..<count { sum += expf(row[c] - maximum) }
    return (maximum + logf(sum), maximum)
}
