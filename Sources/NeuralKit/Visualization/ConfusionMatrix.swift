import Foundation

/// Counts of true class against predicted class, with per-class precision and recall,
/// as scikit-learn's `confusion_matrix` and `precision_recall_fscore_support`.
public struct ConfusionMatrix: Sendable, Equatable {
    /// `counts[trueClass][predictedClass]`: how many samples of `trueClass` were predicted as `predictedClass`.
    public let counts: [[Int]]

    public var classCount: Int { counts.count }

    /// The number of samples counted.
    public var total: Int { counts.reduce(0) { $0 + $1.reduce(0, +) } }

    /// The fraction of samples on the diagonal, or 0 when there are no samples.
    public var accuracy: Double {
        let correct = (0..<classCount).reduce(0) { $0 + counts[$1][$1] }
        return total == 0 ? 0 : Double(correct) / Double(total)
    }

    /// Per class, the fraction of samples predicted as that class that belong to it:
    /// the diagonal count over the column sum. A class never predicted gets 0, as with
    /// scikit-learn's default `zero_division`.
    public var precision: [Double] {
        (0..<classCount).map { column in
            let predicted = counts.reduce(0) { $0 + $1[column] }
            return predicted == 0 ? 0 : Double(counts[column][column]) / Double(predicted)
        }
    }

    /// Per class, the fraction of its samples predicted correctly: the diagonal count
    /// over the row sum. A class with no samples gets 0.
    public var recall: [Double] {
        (0..<classCount).map { row in
            let actual = counts[row].reduce(0, +)
            return actual == 0 ? 0 : Double(counts[row][row]) / Double(actual)
        }
    }

    /// Formats the counts as a text table (rows are true classes, columns predicted
    /// classes), followed by a table of precision and recall per class with 4 decimals.
    public func formatted() -> String {
        let cellWidth = max(String(counts.flatMap { $0 }.max() ?? 0).count, String(classCount - 1).count) + 2
        let headerWidth = max("true\\pred".count, String(classCount - 1).count)
        func pad(_ text: String, _ width: Int) -> String {
            String(repeating: " ", count: max(0, width - text.count)) + text
        }

        var lines: [String] = []
        lines.append(pad("true\\pred", headerWidth) + (0..<classCount).map { pad(String($0), cellWidth) }.joined())
        for (row, rowCounts) in counts.enumerated() {
            lines.append(pad(String(row), headerWidth) + rowCounts.map { pad(String($0), cellWidth) }.joined())
        }
        lines.append("")
        lines.append(pad("class", headerWidth) + pad("precision", 11) + pad("recall", 9))
        let precision = self.precision
        let recall = self.recall
        for index in 0..<classCount {
            lines.append(
                pad(String(index), headerWidth) + pad(String(format: "%.4f", precision[index]), 11)
                    + pad(String(format: "%.4f", recall[index]), 9))
        }
        return lines.joined(separator: "\n")
    }
}

/// Counts how often each true class in `labels` was predicted as each class in `predictions`.
///
/// - Parameters:
///   - labels: the true class of each sample, in `0..<classes`.
///   - predictions: the predicted class of each sample, in `0..<classes`, as many as `labels`.
///   - classes: the number of classes; at least 1.
/// - Throws: `NeuralKitError.invalidArgument` when the counts differ or `classes` is
///   below 1, and `NeuralKitError.invalidLabels` naming the first class out of range.
public func confusionMatrix(labels: [Int], predictions: [Int], classes: Int) throws -> ConfusionMatrix {
    guard classes >= 1 else {
        throw NeuralKitError.invalidArgument("confusionMatrix needs at least 1 class, got \(classes)")
    }
    guard labels.count == predictions.count else {
        throw NeuralKitError.invalidArgument(
            "confusionMatrix got \(labels.count) labels but \(predictions.count) predictions; pass one prediction per label")
    }
    for (name, values) in [("label", labels), ("prediction", predictions)] {
        if let index = values.firstIndex(where: { !(0..<classes).contains($0) }) {
            throw NeuralKitError.invalidLabels("\(name) \(values[index]) at index \(index) is outside 0..<\(classes)")
        }
    }
    var counts = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
    for (label, prediction) in zip(labels, predictions) {
        counts[label][prediction] += 1
    }
    return ConfusionMatrix(counts: counts)
}

/// Returns the index of the largest value in each row of a `(N, classes)` tensor, which
/// is the class a softmax output predicts. The first index wins a tie.
public func predictedClasses(_ outputs: Tensor<Float>) throws -> [Int] {
    guard outputs.rank == 2, outputs.shape[1] >= 1 else {
        throw NeuralKitError.incompatibleShapes(
            "predictedClasses needs outputs of shape (N, classes), got \(formatShape(outputs.shape))")
    }
    let classes = outputs.shape[1]
    return outputs.scalars.withUnsafeBufferPointer { buffer in
        (0..<outputs.shape[0]).map { row in argmax(buffer.baseAddress! + row * classes, count: classes) }
    }
}
