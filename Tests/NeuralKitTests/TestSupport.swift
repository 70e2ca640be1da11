import Foundation
import NeuralKit

/// A tensor of uniform values in [low, high) from a seeded generator.
func randomTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor<Float> {
    var generator = SeededGenerator(seed: seed)
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, scalars: (0..<count).map { _ in low + (high - low) * generator.nextUnitFloat() })
}

/// Returns the largest |a - b| / max(1, |a|, |b|) over paired elements.
func maxRelativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "compared arrays differ in length: \(a.count) and \(b.count)")
    var worst: Float = 0
    for (x, y) in zip(a, b) {
        worst = max(worst, abs(x - y) / max(1, abs(x), abs(y)))
    }
    return worst
}

/// The folder of the MNIST copy committed in the repository.
let repositoryMNIST = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Data/mnist")

/// The MNIST data set, loaded once for all tests that need it.
let sharedMNIST: ImageDataset = {
    do {
        return try MNIST.load(from: repositoryMNIST)
    } catch {
        fatalError("cannot load the repository's MNIST copy from \(repositoryMNIST.path): \(error)")
    }
}()

/// Checks the gradient a layer's `backward` returns against central finite differences of
/// `L(x) = sum(forward(x) * weights)`, computed in Double from Float forward passes.
///
/// Returns the worst relative difference over the input gradient and every parameter gradient.
func gradientCheckError(layer: any Layer, input: Tensor<Float>, step: Float = 1e-2, seed: UInt64 = 7) -> Float {
    let output = layer.forward(input, training: true)
    let weights = randomTensor(output.shape, seed: seed)
    func lossValue(_ x: Tensor<Float>) -> Double {
        let y = layer.forward(x, training: true)
        return zip(y.scalars, weights.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }

    _ = layer.forward(input, training: true)
    let inputGradient = layer.backward(weights, needsInputGradient: true)!
    let parameterGradients = layer.parameters.map(\.gradient.scalars)

    var numericInput = [Float](repeating: 0, count: input.count)
    for index in 0..<input.count {
        var plus = input
        var minus = input
        plus.scalars[index] += step
        minus.scalars[index] -= step
        numericInput[index] = Float((lossValue(plus) - lossValue(minus)) / (2 * Double(step)))
    }
    var worst = maxRelativeDifference(inputGradient.scalars, numericInput)

    for (parameterIndex, parameter) in layer.parameters.enumerated() {
        var numeric = [Float](repeating: 0, count: parameter.value.count)
        for index in 0..<parameter.value.count {
            let original = parameter.value.scalars[index]
            parameter.value.scalars[index] = original + step
            let plus = lossValue(input)
            parameter.value.scalars[index] = original - step
            let minus = lossValue(input)
            parameter.value.scalars[index] = original
            numeric[index] = Float((plus - minus) / (2 * Double(step)))
        }
        worst = max(worst, maxRelativeDifference(parameterGradients[parameterIndex], numeric))
    }
    return worst
}

/// Builds a layer for one sample shape with a fixed seed.
func built<L: Layer>(_ layer: L, inputShape: [Int], seed: UInt64 = 1) throws -> L {
    var generator = SeededGenerator(seed: seed)
    _ = try layer.build(inputShape: inputShape, generator: &generator)
    return layer
}

/// Returns the message of the error `body` throws, or nil when it throws nothing.
func errorMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return String(describing: error)
    }
}
