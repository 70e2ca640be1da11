import Testing
import NeuralKit

@Suite struct Conv2DTests {
    @Test func validOutputShape() throws {
        let layer = try built(Conv2D(filters: 32, kernelSize: 3), inputShape: [28, 28, 1])
        let output = layer.forward(Tensor(zeros: [2, 28, 28, 1]), training: false)
        #expect(output.shape == [2, 26, 26, 32])
    }

    @Test func sameOutputShapeWithStride() throws {
        let layer = try built(Conv2D(filters: 4, kernelSize: 3, strides: 2, padding: .same), inputShape: [7, 5, 3])
        let output = layer.forward(Tensor(zeros: [1, 7, 5, 3]), training: false)
        #expect(output.shape == [1, 4, 3, 4])
    }

    @Test func handComputedValues() throws {
        // One 3x3 input channel, a 2x2 kernel of ones plus bias 0.5, valid padding:
        // each output is the sum of a 2x2 window plus 0.5.
        let layer = try built(Conv2D(filters: 1, kernelSize: 2), inputShape: [3, 3, 1])
        layer.kernel!.value = Tensor(shape: [2, 2, 1, 1], scalars: [1, 1, 1, 1])
        layer.bias!.value = Tensor([0.5])
        let input = Tensor<Float>(shape: [1, 3, 3, 1], scalars: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let output = layer.forward(input, training: false)
        #expect(output.shape == [1, 2, 2, 1])
        #expect(output.scalars == [12.5, 16.5, 24.5, 28.5])
    }

    @Test func samePaddingZeroFillsBorder() throws {
        // A 3x3 kernel of ones over a 2x2 input with same padding sums every input.
        let layer = try built(Conv2D(filters: 1, kernelSize: 3, padding: .same, useBias: false), inputShape: [2, 2, 1])
        layer.kernel!.value = Tensor(repeating: 1, shape: [3, 3, 1, 1])
        let output = layer.forward(Tensor(shape: [1, 2, 2, 1], scalars: [1, 2, 3, 4]), training: false)
        #expect(output.scalars == [10, 10, 10, 10])
    }

    @Test func channelsAndFiltersOrder() throws {
        // A 1x1 kernel mixes channels: filter f = sum over c of input[c] * kernel[c, f].
        let layer = try built(Conv2D(filters: 2, kernelSize: 1, useBias: false), inputShape: [1, 2, 2])
        layer.kernel!.value = Tensor(shape: [1, 1, 2, 2], scalars: [1, 10, 100, 1000])
        let output = layer.forward(Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4]), training: false)
        #expect(output.scalars == [201, 2010, 403, 4030])
    }

    @Test(arguments: [Padding.valid, .same])
    func gradientMatchesFiniteDifferences(padding: Padding) throws {
        let layer = try built(Conv2D(filters: 3, kernelSize: (3, 2), strides: (2, 1), padding: padding, activation: .tanh), inputShape: [5, 4, 2])
        let error = gradientCheckError(layer: layer, input: randomTensor([2, 5, 4, 2], seed: 3))
        #expect(error < 2e-3, "worst relative gradient error \(error)")
    }

    @Test func kernelTooLargeForValidPadding() {
        let message = errorMessage { _ = try built(Conv2D(filters: 1, kernelSize: 5), inputShape: [3, 3, 1]) }
        #expect(message?.contains("does not fit input (None, 3, 3, 1)") == true, "\(message ?? "no error")")
    }

    @Test func nonPositiveFiltersRejected() {
        let message = errorMessage { _ = try built(Conv2D(filters: 0, kernelSize: 3), inputShape: [5, 5, 1]) }
        #expect(message == "Conv2D: filters must be a positive integer, got 0")
    }

    @Test func rankThreeInputRejected() {
        let message = errorMessage { _ = try built(Conv2D(filters: 2, kernelSize: 3), inputShape: [28, 28]) }
        #expect(message?.contains("reshape them to (batch, height, width, 1)") == true, "\(message ?? "no error")")
    }
}

@Suite struct MaxPooling2DTests {
    @Test func outputShapesFloorOddSizes() throws {
        let first = try built(MaxPooling2D(poolSize: 2), inputShape: [26, 26, 32])
        let second = try built(MaxPooling2D(poolSize: 2), inputShape: [11, 11, 64])
        #expect(first.forward(Tensor(zeros: [1, 26, 26, 32]), training: false).shape == [1, 13, 13, 32])
        #expect(second.forward(Tensor(zeros: [1, 11, 11, 64]), training: false).shape == [1, 5, 5, 64])
    }

    @Test func handComputedValues() throws {
        let layer = try built(MaxPooling2D(poolSize: 2), inputShape: [4, 4, 1])
        let input = Tensor<Float>(shape: [1, 4, 4, 1], scalars: [
            1, 2, 5, 6,
            3, 4, 8, 7,
            -1, -2, 0, 0,
            -3, -4, 0, 9,
        ])
        #expect(layer.forward(input, training: false).scalars == [4, 8, -1, 9])
    }

    @Test func samePaddingIgnoresPaddedPositions() throws {
        // All inputs negative: a zero-padded border would win the maximum, an ignored one does not.
        let layer = try built(MaxPooling2D(poolSize: 2, padding: .same), inputShape: [3, 3, 1])
        let input = Tensor<Float>(shape: [1, 3, 3, 1], scalars: [-1, -2, -3, -4, -5, -6, -7, -8, -9])
        let output = layer.forward(input, training: false)
        #expect(output.shape == [1, 2, 2, 1])
        #expect(output.scalars == [-1, -3, -7, -9])
    }

    @Test func nanPropagatesWherever() throws {
        // Channel 0 has NaN first in its window, channel 1 has it last; five channels
        // also cover the vector loop and its scalar tail.
        let layer = try built(MaxPooling2D(poolSize: (1, 2)), inputShape: [1, 2, 5])
        let input = Tensor<Float>(shape: [1, 1, 2, 5], scalars: [.nan, 1, 2, 3, 4, 5, .nan, 1, 9, 0])
        let output = layer.forward(input, training: false)
        #expect(output.scalars[0].isNaN)
        #expect(output.scalars[1].isNaN)
        #expect(Array(output.scalars[2...]) == [2, 9, 4])
    }

    @Test func backwardRoutesToMaximum() throws {
        let layer = try built(MaxPooling2D(poolSize: 2), inputShape: [2, 2, 2])
        let input = Tensor<Float>(shape: [1, 2, 2, 2], scalars: [1, 8, 4, 6, 3, 7, 2, 5])
        _ = layer.forward(input, training: true)
        let gradient = layer.backward(Tensor(shape: [1, 1, 1, 2], scalars: [10, 20]), needsInputGradient: true)!
        #expect(gradient.scalars == [0, 20, 10, 0, 0, 0, 0, 0])
    }

    @Test func gradientMatchesFiniteDifferences() throws {
        let layer = try built(MaxPooling2D(poolSize: (2, 3), strides: (1, 2)), inputShape: [5, 7, 2])
        // Distinct values spaced wider than twice the step, so no window has a tie.
        var input = Tensor<Float>(zeros: [2, 5, 7, 2])
        var generator = SeededGenerator(seed: 9)
        var values = (0..<input.count).map { Float($0) * 0.05 }
        values.shuffle(using: &generator)
        input.scalars = values
        let error = gradientCheckError(layer: layer, input: input, step: 1e-2)
        #expect(error < 1e-3, "worst relative gradient error \(error)")
    }
}

@Suite struct DenseTests {
    @Test func handComputedValues() throws {
        let layer = try built(Dense(units: 2), inputShape: [3])
        layer.kernel!.value = Tensor([[1, 2], [3, 4], [5, 6]])
        layer.bias!.value = Tensor([0.5, -0.5])
        let output = layer.forward(Tensor([[1, 1, 1], [1, 0, -1]]), training: false)
        #expect(output.scalars == [9.5, 11.5, -3.5, -4.5])
    }

    @Test func appliesToLastAxis() throws {
        let layer = try built(Dense(units: 10), inputShape: [5, 5, 64])
        #expect(layer.forward(Tensor(zeros: [2, 5, 5, 64]), training: false).shape == [2, 5, 5, 10])
    }

    @Test(arguments: [Activation.linear, .relu, .sigmoid, .tanh, .softmax])
    func gradientMatchesFiniteDifferences(activation: Activation) throws {
        let layer = try built(Dense(units: 4, activation: activation), inputShape: [5])
        let error = gradientCheckError(layer: layer, input: randomTensor([3, 5], seed: 11), step: activation == .relu ? 1e-3 : 1e-2)
        #expect(error < 3e-3, "worst relative gradient error \(error) for \(activation)")
    }

    @Test func softmaxRowsSumToOne() throws {
        let layer = try built(Dense(units: 6, activation: .softmax), inputShape: [4])
        let output = layer.forward(randomTensor([3, 4], seed: 2, low: -50, high: 50), training: false)
        for row in 0..<3 {
            let sum = output.scalars[(row * 6)..<(row * 6 + 6)].reduce(0, +)
            #expect(abs(sum - 1) < 1e-5)
        }
    }

    @Test func glorotUniformKernelRange() throws {
        let layer = try built(Dense(units: 256), inputShape: [1600])
        let limit = (6.0 / Float(1600 + 256)).squareRoot()
        let kernel = layer.kernel!.value.scalars
        #expect(kernel.allSatisfy { abs($0) <= limit })
        #expect(kernel.max()! > limit * 0.99)
        #expect(layer.bias!.value.scalars.allSatisfy { $0 == 0 })
    }
}

@Suite struct DropoutTests {
    @Test func inferencePassesThrough() throws {
        let layer = try built(Dropout(rate: 0.5), inputShape: [100])
        let input = randomTensor([4, 100], seed: 5)
        #expect(layer.forward(input, training: false) == input)
    }

    @Test func trainingDropsAndScales() throws {
        let layer = try built(Dropout(rate: 0.25), inputShape: [10_000])
        let output = layer.forward(Tensor(repeating: 1, shape: [1, 10_000]), training: true)
        let dropped = output.scalars.filter { $0 == 0 }.count
        #expect(output.scalars.allSatisfy { $0 == 0 || abs($0 - 4.0 / 3.0) < 1e-6 })
        #expect(abs(Double(dropped) / 10_000 - 0.25) < 0.02, "dropped fraction \(Double(dropped) / 10_000)")
    }

    @Test func backwardUsesSameMask() throws {
        let layer = try built(Dropout(rate: 0.5), inputShape: [50])
        let output = layer.forward(Tensor(repeating: 1, shape: [2, 50]), training: true)
        let gradient = layer.backward(Tensor(repeating: 1, shape: [2, 50]), needsInputGradient: true)!
        #expect(gradient == output)
    }

    @Test func rateOutOfRangeRejected() {
        let message = errorMessage { _ = try built(Dropout(rate: 1), inputShape: [3]) }
        #expect(message == "Dropout: rate must be in [0, 1), got 1.0")
    }
}

@Suite struct FlattenTests {
    @Test func flattensAndRestores() throws {
        let layer = try built(Flatten(), inputShape: [5, 5, 64])
        let input = randomTensor([2, 5, 5, 64], seed: 4)
        let output = layer.forward(input, training: true)
        #expect(output.shape == [2, 1600])
        #expect(layer.backward(output, needsInputGradient: true) == input)
    }
}

@Suite struct RescalingTests {
    @Test func scalesAndOffsets() throws {
        let layer = try built(Rescaling(scale: 1.0 / 255, offset: -0.5), inputShape: [3])
        let output = layer.forward(Tensor([[0, 255, 51]]), training: false)
        #expect(output.scalars.map { ($0 * 1000).rounded() / 1000 } == [-0.5, 0.5, -0.3])
    }

    @Test func gradientMatchesFiniteDifferences() throws {
        let layer = try built(Rescaling(scale: -3, offset: 2), inputShape: [4])
        let error = gradientCheckError(layer: layer, input: randomTensor([2, 4], seed: 8))
        #expect(error < 1e-3, "worst relative gradient error \(error)")
    }

    @Test func nonFiniteScaleRejected() {
        let message = errorMessage { _ = try built(Rescaling(scale: .infinity), inputShape: [2]) }
        #expect(message == "Rescaling: scale and offset must be finite, got scale inf and offset 0.0")
    }
}
