import Foundation

/// Crossentropy between one-hot (or soft) target rows and predicted class scores, as
/// Keras' `CategoricalCrossentropy`.
///
/// Targets and predictions have the same shape, `(N, C)` or `(N, H, W, C)`. For a row
/// with targets `t` and logits `z`, `loss = sum(t * (logsumexp(z) - z))`. Probabilities
/// `p` are normalized to sum 1 and then clipped to `[1e-7, 1 - 1e-7]`, and
/// `loss = -sum(t * log(p))`, as TensorFlow computes it. With `labelSmoothing` `s`,
/// targets become `t * (1 - s) + s / C`.
public struct CategoricalCrossentropy: Loss {
    public var name: String { "categorical_crossentropy" }
    public let fromLogits: Bool
    /// In [0, 1]; default 0.
    public let labelSmoothing: Float
    public let reduction: Reduction
    public var computesFromSoftmaxLogits: Bool { true }

    public init(fromLogits: Bool = false, labelSmoothing: Float = 0, reduction: Reduction = .sumOverBatchSize) {
        self.fromLogits = fromLogits
        self.labelSmoothing = labelSmoothing
        self.reduction = reduction
    }

    public func validate(targets: Targets, predictionShape: [Int]) throws {
        guard labelSmoothing >= 0, labelSmoothing <= 1 else {
            throw NeuralKitError.invalidArgument("\(name): labelSmoothing must be in [0, 1], got \(labelSmoothing)")
        }
        guard predictionShape.count >= 2, let classes = predictionShape.last else {
            throw NeuralKitError.incompatibleShapes(
                "\(name): predictions must have a batch axis and a class axis, got shape \(formatShape(predictionShape))")
        }
        let targetShape = targets.shape
        if targetShape == predictionShape { return }

        let withoutClasses = Array(predictionShape.dropLast())
        if classes > 1 && (targetShape == withoutClasses || targetShape == withoutClasses + [1]) {
            throw NeuralKitError.invalidLabels(
                "\(name) expects one-hot targets of shape \(formatShape(predictionShape)), but the labels have shape "
                    + "\(formatShape(targetShape)), which looks like class indices; use SparseCategoricalCrossentropy for "
                    + "integer labels, or convert them with toCategorical(labels, numClasses: \(classes))")
        }
        let message = "\(name): targets have shape \(formatShape(targetShape)) but predictions have shape "
            + "\(formatShape(predictionShape)); they must be equal"
        throw NeuralKitError.incompatibleShapes(
            message + missingFlattenHint(targetShape: targetShape, predictionShape: predictionShape, perSampleRank: 2))
    }

    public func elementLosses(targets: Targets, predictions: Tensor<Float>, predictionsAreLogits: Bool) throws -> ElementLosses {
        try validate(targets: targets, predictionShape: predictions.shape)
        try requireFinite(predictions, lossName: name)
        let classes = predictions.shape.last!
        let rows = predictions.count / max(classes, 1)
        var targetValues: [Float]
        switch targets {
        case .values(let tensor): targetValues = tensor.scalars
        case .classIndices(let tensor): targetValues = tensor.scalars.map { Float($0) }
        }
        if labelSmoothing > 0 {
            let offset = labelSmoothing / Float(classes)
            targetValues = targetValues.map { $0 * (1 - labelSmoothing) + offset }
        }

        var values = [Float](repeating: 0, count: rows)
        var gradient = Tensor<Float>(zeros: predictions.shape)
        var zeroSumRow: Int?
        predictions.scalars.withUnsafeBufferPointer { p in
            targetValues.withUnsafeBufferPointer { t in
                gradient.scalars.withUnsafeMutableBufferPointer { g in
                    for r in 0..<rows {
                        let row = p.baseAddress! + r * classes
                        let target = t.baseAddress! + r * classes
                        let rowGradient = g.baseAddress! + r * classes
                        if predictionsAreLogits {
                            let (logSum, _) = logSumExp(row, count: classes)
                            var targetSum: Float = 0
                            var loss: Float = 0
                            for c in 0..<classes {
                                targetSum += target[c]
                                loss += target[c] * (logSum - row[c])
                            }
                            values[r] = loss
                            for c in 0..<classes { rowGradient[c] = expf(row[c] - logSum) * targetSum - target[c] }
                        } else {
                            var sum: Float = 0
                            for c in 0..<classes { sum += row[c] }
                            guard sum > 0 else {
                                zeroSumRow = zeroSumRow ?? r
                                continue
                            }
                            // d loss / d normalized probability, zero where the clip is active.
                            var loss: Float = 0
                            var weightedSum: Float = 0
                            for c in 0..<classes {
                                let normalized = row[c] / sum
                                loss -= target[c] * logf(clipProbability(normalized))
                                let d = isInsideClip(normalized) ? -target[c] / normalized : 0
                                rowGradient[c] = d
                                weightedSum += d * normalized
                            }
                            values[r] = loss
                            for c in 0..<classes { rowGradient[c] = (rowGradient[c] - weightedSum) / sum }
                        }
                    }
                }
            }
        }
        if let zeroSumRow {
            throw NeuralKitError.nonFiniteValue(
                "\(name): the probabilities of row \(zeroSumRow) sum to 0, so they cannot be normalized; "
                    + "end the model with a softmax layer, or pass fromLogits: true if the outputs are logits")
        }
        return ElementLosses(values: values, shape: Array(predictions.shape.dropLast()), included: nil, gradient: gradient)
    }
}
