/// The tensors a layer keeps between its forward and backward passes, reused from step
/// to step so that training allocates no new buffers once shapes settle.
///
/// An inference pass writes the training output buffer too, unless a training pass
/// still waits for its backward pass: then it writes a buffer of its own, so that a
/// `predict` call in between changes nothing the backward pass reads. The input is
/// released after `backward`, so that at the next step the previous layer owns its
/// output buffer alone and can overwrite it in place.
struct LayerBuffers {
    private(set) var trainingOutput = Tensor<Float>(zeros: [0])
    private var inferenceOutput = Tensor<Float>(zeros: [0])
    private var lastInput: Tensor<Float>?
    private var inputGradient = Tensor<Float>(zeros: [0])

    /// Sizes the output buffer, runs `compute(input, output)` and returns the output.
    mutating func forward(
        input: Tensor<Float>, outputShape: [Int], training: Bool,
        compute: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) -> Tensor<Float> {
        if training {
            lastInput = input
            return Self.run(input, into: &trainingOutput, shape: outputShape, compute)
        }
        if lastInput == nil {
            return Self.run(input, into: &trainingOutput, shape: outputShape, compute)
        }
        return Self.run(input, into: &inferenceOutput, shape: outputShape, compute)
    }

    /// Sizes the input gradient and runs `compute(input, output, outputGradient, inputGradient)`.
    ///
    /// - Returns: the input gradient, or nil when `needsInputGradient` is false.
    mutating func backward(
        _ outputGradient: Tensor<Float>, needsInputGradient: Bool, layer: String,
        compute: (Tensor<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>?) -> Void
    ) -> Tensor<Float>? {
        guard let input = lastInput else {
            fatalError("layer '\(layer)': backward needs a preceding forward pass with training: true")
        }
        checkPrecondition(
            outputGradient.shape == trainingOutput.shape,
            "layer '\(layer)': gradient shape \(formatShape(outputGradient.shape)) differs from output shape \(formatShape(trainingOutput.shape))")
        if needsInputGradient { inputGradient.resize(to: input.shape, filler: 0) }

        trainingOutput.scalars.withUnsafeBufferPointer { y in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                if needsInputGradient {
                    inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                        compute(input, y.baseAddress!, dy.baseAddress!, dx.baseAddress!)
                    }
                } else {
                    compute(input, y.baseAddress!, dy.baseAddress!, nil)
                }
            }
        }
        lastInput = nil
        return needsInputGradient ? inputGradient : nil
    }

    private static func run(
        _ input: Tensor<Float>, into output: inout Tensor<Float>, shape: [Int],
        _ compute: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) -> Tensor<Float> {
        output.resize(to: shape, filler: 0)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in compute(x.baseAddress!, y.baseAddress!) }
        }
        return output
    }
}

/// Calls `body` with a pointer to `array`'s elements, or with nil when `array` is nil.
func withOptionalPointer<Result>(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> Result) -> Result {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// Calls `body` with a mutable pointer to `array`'s elements when `condition` holds, else with nil.
func withOptionalMutablePointer<Result>(
    _ array: inout [Float], if condition: Bool, _ body: (UnsafeMutablePointer<Float>?) -> Result
) -> Result {
    guard condition else { return body(nil) }
    return array.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}

/// Calls `body` with a mutable pointer to the parameter's gradient, or with nil when there is no parameter.
func withMutableGradient<Result>(_ parameter: Parameter?, _ body: (UnsafeMutablePointer<Float>?) -> Result) -> Result {
    guard let parameter else { return body(nil) }
    return parameter.gradient.scalars.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}
