import Foundation

/// Crossentropy between integer class labels and predicted class scores, as Keras'
/// `SparseCategoricalCrossentropy`.
///
/// Predictions have shape `(N, C)` or, for per-pixel labels, `(N, H, W, C)`. Labels
/// have the prediction shape without the class axis, `(N)` or `(N, H, W)`; a trailing
/// axis of 1, `(N, 1)`, means the same. Labels may be any integer tensor or floats with
/// integral values. No one-hot tensor is built, so memory grows with the logits only.
///
/// Per element with label `y`: from logits `z`, `loss = logsumexp(z) - z[y]`; from
/// probabilities `p`, clipped to `[1e-7, 1 - 1e-7]` and then normalized,
/// `loss = -log(p[y] / sum(p))`, as TensorFlow computes it.
public struct SparseCategoricalCrossentropy: Loss {
    public var name: String { "sparse_categorical_crossentropy" }
    public let fromLogits: Bool
    /// A label whose elements contribute nothing and are left out of the mean; nil (default) for none.
    public let ignoreClass: Int?
    public let reduction: Reduction
    public var computesFromSoftmaxLogits: Bool { true }

    public init(fromLogits: Bool = false, ignoreClass: Int? = nil, reduction: Reduction = .sumOverBatchSize) {
        self.fromLogits = fromLogits
        self.ignoreClass = ignoreClass
        self.reduction = reduction
    }

    /// Checks the label shape and every label value.
    public func validate(targets: Targets, predictionShape: [Int]) throws {
        _ = try labelCount(targetShape: targets.shape, predictionShape: predictionShape)
        _ = try classLabels(targets, classes: predictionShape.last ?? 0)
    }

    public func elementLosses(targets: Targets, predictions: Tensor<Float>, predictionsAreLogits: Bool) throws -> ElementLosses {
        let elementCount = try labelCount(targetShape: targets.shape, predictionShape: predictions.shape)
        let classes = predictions.shape.last ?? 0
        let labels = try classLabels(targets, classes: classes)
        try requireFinite(predictions, lossName: name)

        var values = [Float](repeating: 0, count: elementCount)
        var included: [Bool]? = ignoreClass == nil ? nil : [Bool](repeating: true, count: elementCount)
        var gradient = Tensor<Float>(zeros: predictions.shape)
        predictions.scalars.withUnsafeBufferPointer { p in
            gradient.scalars.withUnsafeMutableBufferPointer { g in
                for e in 0..<elementCount {
                    let label = labels[e]
                    if label == ignoreClass {
                        included?[e] = false
                        continue
                    }
                    let row = p.baseAddress! + e * classes
                    let rowGradient = g.baseAddress! + e * classes
                    if predictionsAreLogits {
                        let (logSum, _) = logSumExp(row, count: classes)
                        values[e] = logSum - row[label]
                        for c in 0..<classes { rowGradient[c] = expf(row[c] - logSum) }
                        rowGradient[label] -= 1
                    } else {
                        var sum: Float = 0
                        for c in 0..<classes { sum += clipProbability(row[c]) }
                        let clippedLabel = clipProbability(row[label])
                        values[e] = logf(sum) - logf(clippedLabel)
                        // The clip passes no gradient where it is active.
                        for c in 0..<classes where isInsideClip(row[c]) { rowGradient[c] = 1 / sum }
                        if isInsideClip(row[label]) { rowGradient[label] -= 1 / clippedLabel }
                    }
                }
            }
        }
        let shape = Array(predictions.shape.dropLast())
        return ElementLosses(values: values, shape: shape, included: included, gradient: gradient)
    }

    /// Returns the number of labels after checking that the label shape fits the
    /// prediction shape, naming both shapes and the likely fix otherwise.
    func labelCount(targetShape: [Int], predictionShape: [Int]) throws -> Int {
        guard let classes = predictionShape.last, predictionShape.count >= 2 else {
            throw NeuralKitError.incompatibleShapes(
                "\(name): predictions must have a batch axis and a class axis, got shape \(formatShape(predictionShape))")
        }
        let expected = Array(predictionShape.dropLast())
        if targetShape == expected || targetShape == expected + [1] {
            return expected.reduce(1, *)
        }
        if targetShape == predictionShape && classes > 1 {
            throw NeuralKitError.invalidLabels(
                "\(name) expects class indices of shape \(formatShape(expected)), but the labels have the prediction shape "
                    + "\(formatShape(predictionShape)), which looks one-hot encoded; use CategoricalCrossentropy for one-hot labels, "
                    + "or pass the class indices")
        }
        let message = "\(name): labels have shape \(formatShape(targetShape)) but predictions have shape \(formatShape(predictionShape)); "
            + "labels must have shape \(formatShape(expected)) or \(formatShape(expected + [1]))"
        throw NeuralKitError.incompatibleShapes(
            message + missingFlattenHint(targetShape: targetShape, predictionShape: predictionShape, perSampleRank: 1))
    }

    /// Converts targets to class indices, checking that each is integral and in `[0, classes)` or `ignoreClass`.
    func classLabels(_ targets: Targets, classes: Int) throws -> [Int] {
        var labels: [Int]
        switch targets {
        case .classIndices(let tensor):
            labels = tensor.scalars
        case .values(let tensor):
            labels = []
            labels.reserveCapacity(tensor.count)
            for (position, value) in tensor.scalars.enumerated() {
                guard value.isFinite, value.rounded(.towardZero) == value, abs(value) < 1e9 else {
                    throw NeuralKitError.invalidLabels(
                        "\(name): label \(value) at \(formatIndex(position, shape: tensor.shape)) is not an integer class index; "
                            + "sparse labels must be whole numbers in [0, \(classes)), or pass one-hot rows to CategoricalCrossentropy")
                }
                labels.append(Int(value))
            }
        }
        let shape = targets.shape
        for (position, label) in labels.enumerated() where (label < 0 || label >= classes) && label != ignoreClass {
            throw NeuralKitError.invalidLabels(
                "\(name): label \(label) at \(formatIndex(position, shape: shape)) is outside the valid range [0, \(classes)) "
                    + "for predictions with \(classes) classes; "
                    + (label < 0
                        ? "pass ignoreClass: \(label) to skip such labels, or fix the labels"
                        : "give the last layer at least \(label + 1) units, or fix the labels"))
        }
        return labels
    }
}

/// Clips a probability to `[1e-7, 1 - 1e-7]`, as Keras does before taking its log.
func clipProbability(_ p: Float) -> Float {
    min(max(p, probabilityEpsilon), 1 - probabilityEpsilon)
}

/// Returns whether the clip leaves `p` unchanged, so that the gradient passes through it.
func isInsideClip(_ p: Float) -> Bool {
    p >= probabilityEpsilon && p <= 1 - probabilityEpsilon
}
