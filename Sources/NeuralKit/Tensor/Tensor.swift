/// A dense n-dimensional array in row-major order, with value semantics.
///
/// `Tensor<Float>` carries inputs, activations and parameters; integer tensors
/// (`Tensor<Int32>`, `Tensor<UInt8>`, ...) carry class labels. Images are
/// channels-last: `(batch, height, width, channels)`, as Keras stores them.
public struct Tensor<Scalar> {
    /// The size of each axis, outermost first.
    public private(set) var shape: [Int]

    /// The elements in row-major order; `scalars.count` equals the product of `shape`.
    public var scalars: [Scalar]

    /// Creates a tensor from its shape and its elements in row-major order.
    ///
    /// - Precondition: every dimension is non-negative and `scalars.count` is the
    ///   product of `shape`.
    public init(shape: [Int], scalars: [Scalar]) {
        checkPrecondition(shape.allSatisfy { $0 >= 0 }, "Tensor shape \(formatShape(shape)) has a negative dimension")
        let count = shape.reduce(1, *)
        checkPrecondition(
            count == scalars.count,
            "Tensor shape \(formatShape(shape)) needs \(count) scalars, but \(scalars.count) were given")
        self.shape = shape
        self.scalars = scalars
    }

    /// Creates a tensor of the given shape with every element set to `value`.
    public init(repeating value: Scalar, shape: [Int]) {
        self.init(shape: shape, scalars: Array(repeating: value, count: shape.reduce(1, *)))
    }

    /// The number of axes.
    public var rank: Int { shape.count }

    /// The number of elements.
    public var count: Int { scalars.count }

    /// Returns the same elements under a new shape with the same element count.
    public func reshaped(to newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Changes the shape in place; the element count must stay the same.
    public mutating func reshape(to newShape: [Int]) {
        checkPrecondition(
            newShape.reduce(1, *) == scalars.count,
            "cannot reshape a tensor of shape \(formatShape(shape)) to \(formatShape(newShape))")
        shape = newShape
    }

    /// Gives the tensor `newShape`, keeping its storage when the element count is
    /// unchanged; new storage is filled with `filler`. Layers use it to reuse buffers
    /// from step to step, so the contents are meant to be overwritten.
    mutating func resize(to newShape: [Int], filler: Scalar) {
        let count = newShape.reduce(1, *)
        if count != scalars.count {
            scalars = Array(repeating: filler, count: count)
        }
        shape = newShape
    }

    /// Returns the elements along the first axis at `indices`, in that order.
    ///
    /// Used to form batches: `x.gathering(rows: batchIndices)`.
    public func gathering(rows indices: some Collection<Int>) -> Tensor {
        checkPrecondition(rank >= 1, "cannot take rows of a scalar tensor")
        let rowSize = shape.dropFirst().reduce(1, *)
        var result = [Scalar]()
        result.reserveCapacity(indices.count * rowSize)
        scalars.withUnsafeBufferPointer { source in
            for index in indices {
                checkPrecondition(index >= 0 && index < shape[0], "row \(index) is outside 0..<\(shape[0])")
                result.append(contentsOf: source[(index * rowSize)..<((index + 1) * rowSize)])
            }
        }
        return Tensor(shape: [indices.count] + shape.dropFirst(), scalars: result)
    }

    /// Writes the elements along the first axis at `indices` into `result`, reusing its
    /// storage when the size matches: the allocation-free form of `gathering(rows:)`.
    func gather(rows indices: some Collection<Int>, into result: inout Tensor) where Scalar == Float {
        let rowSize = shape.dropFirst().reduce(1, *)
        result.resize(to: [indices.count] + shape.dropFirst(), filler: 0)
        scalars.withUnsafeBufferPointer { source in
            result.scalars.withUnsafeMutableBufferPointer { destination in
                var offset = 0
                for index in indices {
                    checkPrecondition(index >= 0 && index < shape[0], "row \(index) is outside 0..<\(shape[0])")
                    (destination.baseAddress! + offset).update(from: source.baseAddress! + index * rowSize, count: rowSize)
                    offset += rowSize
                }
            }
        }
    }

    /// Returns the rows `range` along the first axis.
    public func slicing(rows range: Range<Int>) -> Tensor {
        checkPrecondition(rank >= 1, "cannot take rows of a scalar tensor")
        checkPrecondition(
            range.lowerBound >= 0 && range.upperBound <= shape[0],
            "rows \(range) are outside 0..<\(shape[0])")
        let rowSize = shape.dropFirst().reduce(1, *)
        let elements = Array(scalars[(range.lowerBound * rowSize)..<(range.upperBound * rowSize)])
        return Tensor(shape: [range.count] + shape.dropFirst(), scalars: elements)
    }
}

extension Tensor: Equatable where Scalar: Equatable {}
extension Tensor: Sendable where Scalar: Sendable {}

extension Tensor where Scalar: Numeric {
    /// Creates a tensor of zeros.
    public init(zeros shape: [Int]) {
        self.init(repeating: 0, shape: shape)
    }
}

extension Tensor {
    /// Creates a 1-D tensor.
    public init(_ values: [Scalar]) {
        self.init(shape: [values.count], scalars: values)
    }

    /// Creates a 2-D tensor from rows of equal length.
    public init(_ rows: [[Scalar]]) {
        let width = rows.first?.count ?? 0
        checkPrecondition(rows.allSatisfy { $0.count == width }, "rows of a 2-D tensor must have equal lengths")
        self.init(shape: [rows.count, width], scalars: rows.flatMap { $0 })
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        "Tensor<\(Scalar.self)>(shape: \(formatShape(shape)), scalars: \(scalars.prefix(8))\(scalars.count > 8 ? "…" : ""))"
    }
}

/// Formats a shape as Keras prints it: `(2, 3, 3, 10)`, or with `unknownBatch`
/// a leading `None` for the batch axis: `(None, 26, 26, 32)`.
public func formatShape(_ shape: [Int], unknownBatch: Bool = false) -> String {
    let parts = (unknownBatch ? ["None"] : []) + shape.map(String.init)
    return parts.count == 1 ? "(\(parts[0]),)" : "(" + parts.joined(separator: ", ") + ")"
}
