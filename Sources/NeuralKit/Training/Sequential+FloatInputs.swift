// Overloads for `Tensor<Float>` inputs. The generic methods take any `ModelInput`, so a
// literal such as `Tensor(zeros: [4, 3])` would leave its element type open. These
// overloads fix it to Float, as Keras defaults to float32.
extension Sequential {
    /// Trains the model on float inputs; see `fit(x:y:...)` for `ModelInput`.
    @discardableResult
    public func fit(
        x: Tensor<Float>, y: some TargetConvertible,
        batchSize: Int = 32, epochs: Int = 1, verbose: Verbosity = .progressBar, callbacks: [any Callback] = [],
        validationSplit: Double = 0, validationData: (x: any ModelInput, y: any TargetConvertible)? = nil,
        shuffle: Bool = true, classWeight: [Int: Float]? = nil, sampleWeight: Tensor<Float>? = nil,
        initialEpoch: Int = 0, interruption: TrainingInterruption? = nil,
        output: ((String) -> Void)? = nil
    ) throws -> History {
        try fit(
            x: FloatInput(tensor: x), y: y, batchSize: batchSize, epochs: epochs, verbose: verbose, callbacks: callbacks,
            validationSplit: validationSplit, validationData: validationData, shuffle: shuffle, classWeight: classWeight,
            sampleWeight: sampleWeight, initialEpoch: initialEpoch, interruption: interruption, output: output)
    }

    /// Computes the loss and metrics on float inputs; see `evaluate(x:y:...)` for `ModelInput`.
    public func evaluate(
        x: Tensor<Float>, y: some TargetConvertible, batchSize: Int = 32, sampleWeight: Tensor<Float>? = nil
    ) throws -> [String: Float] {
        try evaluate(x: FloatInput(tensor: x), y: y, batchSize: batchSize, sampleWeight: sampleWeight)
    }

    /// Computes the outputs for float inputs; see `predict(_:batchSize:)` for `ModelInput`.
    public func predict(_ x: Tensor<Float>, batchSize: Int = 32) throws -> Tensor<Float> {
        try predict(FloatInput(tensor: x), batchSize: batchSize)
    }
}

/// A float tensor passed on to the generic methods, so that the call does not select
/// these overloads again.
private struct FloatInput: ModelInput {
    let tensor: Tensor<Float>

    var shape: [Int] { tensor.shape }

    func gatherFloats(rows indices: some Collection<Int>, into batch: inout Tensor<Float>) {
        tensor.gatherFloats(rows: indices, into: &batch)
    }

    func firstNonFiniteValue() -> (index: Int, value: Float)? {
        tensor.firstNonFiniteValue()
    }
}
