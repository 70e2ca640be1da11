/// A tensor that `fit`, `evaluate` and `predict` accept as inputs: `Tensor<Float>`, or
/// `Tensor<UInt8>`, whose bytes are converted to floats one batch at a time, as Keras
/// casts inputs to float32. Bytes take a quarter of the memory, so image data can stay
/// in bytes with a `Rescaling(scale: 1 / 255)` layer at the start of the model.
public protocol ModelInput {
    var shape: [Int] { get }

    /// Writes the rows at `indices`, as floats, into `batch`, reusing its storage.
    func gatherFloats(rows indices: some Collection<Int>, into batch: inout Tensor<Float>)

    /// Returns the flat index and value of the first NaN or infinity, or nil if there is none.
    func firstNonFiniteValue() -> (index: Int, value: Float)?
}

/// An element type that model inputs may have.
public protocol ModelInputScalar {
    /// Writes the rows at `indices` of `tensor`, as floats, into `batch`.
    static func gatherFloats(_ tensor: Tensor<Self>, rows indices: some Collection<Int>, into batch: inout Tensor<Float>)

    /// Returns the flat index and value of the first NaN or infinity in `tensor`, or nil.
    static func firstNonFiniteValue(in tensor: Tensor<Self>) -> (index: Int, value: Float)?
}

extension Float: ModelInputScalar {
    public static func gatherFloats(_ tensor: Tensor<Float>, rows indices: some Collection<Int>, into batch: inout Tensor<Float>) {
        tensor.gather(rows: indices, into: &batch)
    }

    public static func firstNonFiniteValue(in tensor: Tensor<Float>) -> (index: Int, value: Float)? {
        tensor.scalars.firstIndex { !$0.isFinite }.map { ($0, tensor.scalars[$0]) }
    }
}

extension UInt8: ModelInputScalar {
    public static func gatherFloats(_ tensor: Tensor<UInt8>, rows indices: some Collection<Int>, into batch: inout Tensor<Float>) {
        let rowSize = tensor.shape.dropFirst().reduce(1, *)
        let rowCount = tensor.shape.first ?? 0
        batch.resize(to: [indices.count] + tensor.shape.dropFirst(), filler: 0)
        tensor.scalars.withUnsafeBufferPointer { source in
            batch.scalars.withUnsafeMutableBufferPointer { destination in
                var offset = 0
                for row in indices {
                    checkPrecondition(row >= 0 && row < rowCount, "row \(row) is outside 0..<\(rowCount)")
                    let start = row * rowSize
                    for index in 0..<rowSize { destination[offset + index] = Float(source[start + index]) }
                    offset += rowSize
                }
            }
        }
    }

    public static func firstNonFiniteValue(in tensor: Tensor<UInt8>) -> (index: Int, value: Float)? { nil }
}

extension Tensor: ModelInput where Scalar: ModelInputScalar {
    public func gatherFloats(rows indices: some Collection<Int>, into batch: inout Tensor<Float>) {
        Scalar.gatherFloats(self, rows: indices, into: &batch)
    }

    public func firstNonFiniteValue() -> (index: Int, value: Float)? {
        Scalar.firstNonFiniteValue(in: self)
    }
}

extension ModelInput {
    /// Returns the rows in `range` as floats.
    func floatRows(_ range: Range<Int>) -> Tensor<Float> {
        var batch = Tensor<Float>(zeros: [0])
        gatherFloats(rows: range, into: &batch)
        return batch
    }
}

/// Bytes that models read as floats divided by `divisor`, one batch at a time: image
/// data in [0, 255] with `divisor: 255` trains exactly as `Tensor<Float>` of `x / 255`
/// does, in a quarter of the memory.
public struct ScaledBytes: ModelInput, Sendable {
    public var bytes: Tensor<UInt8>
    /// Positive and finite.
    public let divisor: Float

    public init(_ bytes: Tensor<UInt8>, divisor: Float) {
        checkPrecondition(divisor > 0 && divisor.isFinite, "ScaledBytes: divisor must be positive and finite, got \(divisor)")
        self.bytes = bytes
        self.divisor = divisor
    }

    public var shape: [Int] { bytes.shape }

    /// Returns the rows in `range`, still as bytes.
    public func slicing(rows range: Range<Int>) -> ScaledBytes {
        ScaledBytes(bytes.slicing(rows: range), divisor: divisor)
    }

    /// Returns all values as floats.
    public func floats() -> Tensor<Float> {
        Tensor(shape: bytes.shape, scalars: bytes.scalars.map { Float($0) / divisor })
    }

    public func gatherFloats(rows indices: some Collection<Int>, into batch: inout Tensor<Float>) {
        bytes.gatherFloats(rows: indices, into: &batch)
        let divisor = self.divisor
        batch.scalars.withUnsafeMutableBufferPointer { values in
            for index in 0..<values.count { values[index] /= divisor }
        }
    }

    public func firstNonFiniteValue() -> (index: Int, value: Float)? { nil }
}
