import Foundation
import Testing
import NeuralKit

@Suite struct SparseCategoricalCrossentropyTests {
    @Test(arguments: [(0, 0.41703), (1, 1.41703), (2, 2.31703)] as [(Int32, Float)])
    func handComputedFromLogits(label: Int32, expected: Float) throws {
        let loss = SparseCategoricalCrossentropy(fromLogits: true)
        let value = try loss(Tensor([label]), Tensor([[2, 1, 0.1]]))
        #expect(abs(value.scalars[0] - expected) < 1e-5)
    }

    @Test func largeLogitsAreExact() throws {
        let value = try SparseCategoricalCrossentropy(fromLogits: true)(Tensor([Int32(0)]), Tensor([[14.4, 50.1, 3.5]]))
        #expect(abs(value.scalars[0] - 35.7) < 1e-4)
    }

    @Test func labelOutOfRangeNamesLabelAndRange() {
        let message = errorMessage {
            _ = try SparseCategoricalCrossentropy(fromLogits: true)(Tensor([Int32(100)]), Tensor([[0, 1]]))
        }
        #expect(message?.contains("label 100 at index (0)") == true, "\(message ?? "no error")")
        #expect(message?.contains("[0, 2)") == true)
    }

    @Test func negativeLabelNamesFirstOffender() {
        let message = errorMessage {
            _ = try SparseCategoricalCrossentropy()(Tensor([Int32(-56), -47]), Tensor([[0.05, 0.95, 0], [0.1, 0.8, 0.1]]))
        }
        #expect(message?.contains("label -56") == true, "\(message ?? "no error")")
        #expect(message?.contains("ignoreClass: -56") == true)
    }

    @Test func oneHotLabelsSuggestCategorical() {
        let message = errorMessage {
            _ = try SparseCategoricalCrossentropy()(Tensor<Float>([[1, 0, 0]]), Tensor([[0.7, 0.2, 0.1]]))
        }
        #expect(message?.contains("use CategoricalCrossentropy") == true, "\(message ?? "no error")")
    }

    @Test func fourDimensionalPredictionsSuggestFlatten() {
        let message = errorMessage {
            _ = try SparseCategoricalCrossentropy()(Tensor<Int32>(zeros: [2]), Tensor(repeating: 0.1, shape: [2, 5, 5, 10]))
        }
        #expect(message?.contains("(2, 5, 5, 10)") == true, "\(message ?? "no error")")
        #expect(message?.contains("add Flatten()") == true)
    }

    @Test func fractionalFloatLabelRejected() {
        let message = errorMessage {
            _ = try SparseCategoricalCrossentropy(fromLogits: true)(Tensor<Float>([2.5]), Tensor([[0, 0, 0, 1]]))
        }
        #expect(message?.contains("label 2.5") == true, "\(message ?? "no error")")
    }

    @Test func fiftyThousandClasses() throws {
        var logits = Tensor<Float>(zeros: [1, 50_000])
        logits.scalars[49_999] = 0
        let value = try SparseCategoricalCrossentropy(fromLogits: true)(Tensor([Int32(49_999)]), logits)
        #expect(abs(value.scalars[0] - 10.81978) < 1e-4)
    }

    @Test func nanPredictionNamesPosition() {
        let message = errorMessage {
            _ = try SparseCategoricalCrossentropy(fromLogits: true)(Tensor([Int32(0), 1]), Tensor([[0, 1], [Float.nan, 2]]))
        }
        #expect(message?.contains("nan at index (1, 0)") == true, "\(message ?? "no error")")
    }

    @Test(arguments: [true, false])
    func gradientMatchesFiniteDifferences(fromLogits: Bool) throws {
        let loss = SparseCategoricalCrossentropy(fromLogits: fromLogits)
        let predictions = fromLogits ? randomTensor([3, 4], seed: 21) : randomTensor([3, 4], seed: 21, low: 0.1, high: 0.9)
        let labels: Targets = .classIndices(Tensor([2, 0, 3]))
        try expectLossGradientMatches(loss, labels, predictions)
    }

    @Test func perPixelGradientMatchesFiniteDifferences() throws {
        let loss = SparseCategoricalCrossentropy(fromLogits: true, ignoreClass: 1)
        let labels: Targets = .classIndices(Tensor(shape: [2, 2, 2], scalars: [0, 1, 2, 0, 1, 2, 2, 0]))
        try expectLossGradientMatches(loss, labels, randomTensor([2, 2, 2, 3], seed: 5))
    }
}

@Suite struct CategoricalCrossentropyTests {
    @Test func zeroProbabilityIsClipped() throws {
        let value = try CategoricalCrossentropy()(Tensor<Float>([[1, 0]]), Tensor([[0, 1]]))
        #expect(abs(value.scalars[0] - 16.11810) < 1e-4)
        #expect(value.scalars[0].isFinite)
    }

    @Test func classIndicesSuggestSparseOrToCategorical() {
        let message = errorMessage {
            _ = try CategoricalCrossentropy()(Tensor<Int32>(shape: [1, 1], scalars: [2]), Tensor([[0.1, 0.6, 0.3]]))
        }
        #expect(message?.contains("SparseCategoricalCrossentropy") == true, "\(message ?? "no error")")
        #expect(message?.contains("toCategorical") == true)
    }

    @Test func zeroSumRowRejected() {
        let message = errorMessage { _ = try CategoricalCrossentropy()(Tensor<Float>([[1, 0]]), Tensor([[0, 0]])) }
        #expect(message?.contains("row 0 sum to 0") == true, "\(message ?? "no error")")
    }

    @Test(arguments: [true, false])
    func gradientMatchesFiniteDifferences(fromLogits: Bool) throws {
        let loss = CategoricalCrossentropy(fromLogits: fromLogits, labelSmoothing: 0.1)
        let predictions = fromLogits ? randomTensor([3, 4], seed: 22) : randomTensor([3, 4], seed: 22, low: 0.1, high: 0.9)
        let targets: Targets = .values(try toCategorical(Tensor<Int32>([1, 3, 0]), numClasses: 4))
        try expectLossGradientMatches(loss, targets, predictions)
    }
}

@Suite struct ToCategoricalTests {
    @Test func oneHotRows() throws {
        let oneHot = try toCategorical(Tensor<UInt8>([2, 0]), numClasses: 3)
        #expect(oneHot == Tensor<Float>([[0, 0, 1], [1, 0, 0]]))
    }

    @Test func inferredClassCountAndTrailingAxis() throws {
        let oneHot = try toCategorical(Tensor<Int32>(shape: [2, 1], scalars: [1, 3]))
        #expect(oneHot.shape == [2, 4])
    }

    @Test func negativeOrHugeLabelRejected() {
        let negative = errorMessage { _ = try toCategorical(Tensor<Int>([2, -1])) }
        #expect(negative?.contains("label -1 at index 1 is not a class index") == true, "\(negative ?? "no error")")
        let huge = errorMessage { _ = try toCategorical(Tensor<Int>([Int.max])) }
        #expect(huge?.contains("is too large to be a class index") == true, "\(huge ?? "no error")")
        let tooMany = errorMessage { _ = try toCategorical(Tensor<Int>([3_000_000_000])) }
        #expect(tooMany?.contains("need more than 2^31 floats") == true, "\(tooMany ?? "no error")")
    }

    @Test func labelBeyondClassCountRejected() {
        let message = errorMessage { _ = try toCategorical(Tensor<Int32>([0, 5]), numClasses: 3) }
        #expect(message?.contains("label 5 at index 1") == true, "\(message ?? "no error")")
    }
}

/// Checks a loss's gradient (sum-over-batch-size reduction) against central differences.
func expectLossGradientMatches(_ loss: some Loss, _ targets: Targets, _ predictions: Tensor<Float>) throws {
    func value(_ p: Tensor<Float>) throws -> Double {
        Double(try loss(targets, p).scalars[0])
    }
    let elements = try loss.elementLosses(targets: targets, predictions: predictions, predictionsAreLogits: loss.fromLogits)
    let included = elements.included?.filter { $0 }.count ?? elements.values.count
    let analytic = elements.gradient.scalars.map { $0 / Float(included) }
    let step: Float = 1e-3
    var numeric = [Float]()
    for index in 0..<predictions.count {
        var plus = predictions
        var minus = predictions
        plus.scalars[index] += step
        minus.scalars[index] -= step
        numeric.append(Float((try value(plus) - value(minus)) / (2 * Double(step))))
    }
    let error = maxRelativeDifference(analytic, numeric)
    #expect(error < 2e-3, "worst relative gradient error \(error)")
}
