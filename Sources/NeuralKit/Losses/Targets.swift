/// The true values a loss compares predictions with (Keras' `y_true`).
///
/// `classIndices` come from integer tensors (`Tensor<Int32>`, `Tensor<UInt8>`, ...);
/// `values` from `Tensor<Float>`, which may hold one-hot rows, probabilities, or class
/// indices stored as floats (`3.0`).
public enum Targets: Sendable {
    case classIndices(Tensor<Int>)
    case values(Tensor<Float>)

    public var shape: [Int] {
        switch self {
        case .classIndices(let tensor): return tensor.shape
        case .values(let tensor): return tensor.shape
        }
    }

    /// Returns the targets of the samples at `indices` along the first axis.
    public func gathering(rows indices: some Collection<Int>) -> Targets {
        switch self {
        case .classIndices(let tensor): return .classIndices(tensor.gathering(rows: indices))
        case .values(let tensor): return .values(tensor.gathering(rows: indices))
        }
    }

    /// Returns the targets of the samples in `range` along the first axis.
    public func slicing(rows range: Range<Int>) -> Targets {
        switch self {
        case .classIndices(let tensor): return .classIndices(tensor.slicing(rows: range))
        case .values(let tensor): return .values(tensor.slicing(rows: range))
        }
    }
}

/// A type that `fit`, `evaluate` and the losses accept as targets.
public protocol TargetConvertible {
    var targets: Targets { get }
}

/// An element type a target tensor may have.
public protocol TargetScalar {
    static func makeTargets(_ tensor: Tensor<Self>) -> Targets
}

extension Float: TargetScalar {
    public static func makeTargets(_ tensor: Tensor<Float>) -> Targets { .values(tensor) }
}

extension TargetScalar where Self: BinaryInteger {
    public static func makeTargets(_ tensor: Tensor<Self>) -> Targets {
        .classIndices(Tensor<Int>(shape: tensor.shape, scalars: tensor.scalars.map { Int(clamping: $0) }))
    }
}

extension Int: TargetScalar {}
extension Int32: TargetScalar {}
extension Int64: TargetScalar {}
extension UInt8: TargetScalar {}
extension Int16: TargetScalar {}
extension Int8: TargetScalar {}
extension UInt: TargetScalar {}
extension UInt64: TargetScalar {}
extension UInt16: TargetScalar {}
extension UInt32: TargetScalar {}

extension Tensor: TargetConvertible where Scalar: TargetScalar {
    public var targets: Targets { Scalar.makeTargets(self) }
}

extension Targets: TargetConvertible {
    public var targets: Targets { self }
}

/// Converts class indices to one-hot rows, as `keras.utils.to_categorical` does:
/// labels of shape `(N)` (or `(N, 1)`) give `(N, numClasses)`.
///
/// - Parameter numClasses: the number of classes; nil means the largest label plus one.
/// - Throws: `NeuralKitError.invalidLabels` for a negative label or one `>= numClasses`.
public func toCategorical<Scalar: BinaryInteger>(_ labels: Tensor<Scalar>, numClasses: Int? = nil) throws -> Tensor<Float> {
    var values: [Int] = []
    values.reserveCapacity(labels.count)
    for (position, label) in labels.scalars.enumerated() {
        guard let value = Int(exactly: label), value >= 0 else {
            throw NeuralKitError.invalidLabels(
                "toCategorical: label \(label) at index \(position) is not a class index; labels must be integers from 0 upward")
        }
        values.append(value)
    }
    let largest = values.max() ?? -1
    guard numClasses != nil || largest < Int.max else {
        throw NeuralKitError.invalidLabels("toCategorical: label \(largest) is too large to be a class index")
    }
    let classCount = numClasses ?? (largest + 1)
    guard classCount > 0 else {
        throw NeuralKitError.invalidArgument("toCategorical: numClasses must be positive, got \(classCount)")
    }
    let (elementCount, overflow) = values.count.multipliedReportingOverflow(by: classCount)
    guard !overflow, elementCount <= Int(Int32.max) else {
        throw NeuralKitError.invalidArgument(
            "toCategorical: \(values.count) labels with \(classCount) classes need more than 2^31 floats; "
                + "check numClasses and the largest label, or use SparseCategoricalCrossentropy, which needs no one-hot labels")
    }
    var outputShape = labels.shape
    if outputShape.count > 1 && outputShape.last == 1 { outputShape.removeLast() }
    outputShape.append(classCount)

    var oneHot = [Float](repeating: 0, count: elementCount)
    for (position, label) in values.enumerated() {
        guard label >= 0 && label < classCount else {
            throw NeuralKitError.invalidLabels(
                "toCategorical: label \(label) at index \(position) is outside the valid range [0, \(classCount)); "
                    + "pass numClasses greater than the largest label")
        }
        oneHot[position * classCount + label] = 1
    }
    return Tensor(shape: outputShape, scalars: oneHot)
}
