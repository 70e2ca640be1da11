import Foundation
import Testing
import NeuralKit

/// One case of Fixtures/keras-losses.json, written by Scripts/make-loss-fixtures.py with
/// Keras 3.15.1 on TensorFlow 2.21.0.
struct KerasCase: CustomStringConvertible {
    var name: String
    var function: String
    var fromLogits: Bool
    var reduction: Reduction
    var ignoreClass: Int?
    var labelSmoothing: Float
    var k: Int
    var labels: Tensor<Float>
    var predictions: Tensor<Float>
    var sampleWeight: Tensor<Float>?
    var expected: [Float]?
    var kerasRaised: Bool

    var description: String { name }
}

/// Flattens nested JSON arrays of numbers into values and a shape.
private func flatten(_ value: Any) -> (values: [Float], shape: [Int]) {
    if let array = value as? [Any] {
        let parts = array.map(flatten)
        return (parts.flatMap(\.values), [array.count] + (parts.first?.shape ?? []))
    }
    return ([(value as! NSNumber).floatValue], [])
}

private func tensor(_ value: Any) -> Tensor<Float> {
    let (values, shape) = flatten(value)
    return Tensor(shape: shape, scalars: values)
}

let kerasCases: [KerasCase] = {
    let url = Bundle.module.url(forResource: "keras-losses", withExtension: "json", subdirectory: "Fixtures")!
    let root = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    return (root["cases"] as! [[String: Any]]).map { entry in
        var predictions: Tensor<Float>
        if let spec = entry["y_pred_spec"] as? [String: Any] {
            let shape = (spec["shape"] as! [NSNumber]).map(\.intValue)
            predictions = Tensor(repeating: (spec["fill"] as! NSNumber).floatValue, shape: shape)
            for setting in spec["set"] as! [[Any]] {
                let index = (setting[0] as! [NSNumber]).map(\.intValue)
                predictions.scalars[index[0] * shape[1] + index[1]] = (setting[1] as! NSNumber).floatValue
            }
        } else {
            predictions = tensor(entry["y_pred"]!)
        }
        let expected: [Float]? = (entry["expected"] is NSNull || entry["expected"] == nil) ? nil : flatten(entry["expected"]!).values
        return KerasCase(
            name: entry["name"] as! String,
            function: entry["loss"] as! String,
            fromLogits: entry["from_logits"] as! Bool,
            reduction: Reduction(rawValue: entry["reduction"] as! String)!,
            ignoreClass: (entry["ignore_class"] as? NSNumber)?.intValue,
            labelSmoothing: (entry["label_smoothing"] as? NSNumber)?.floatValue ?? 0,
            k: (entry["k"] as? NSNumber)?.intValue ?? 5,
            labels: tensor(entry["y_true"]!),
            predictions: predictions,
            sampleWeight: entry["sample_weight"].flatMap { $0 is NSNull ? nil : tensor($0) },
            expected: expected,
            kerasRaised: entry["keras_error"] != nil)
    }
}()

@Suite struct KerasFixtureTests {
    @Test func fixtureFileHasCases() {
        #expect(kerasCases.count >= 30)
    }

    @Test(arguments: kerasCases)
    func matchesKeras(_ testCase: KerasCase) throws {
        let isIntegral = testCase.labels.scalars.allSatisfy { $0.rounded() == $0 }
        // Keras truncates a fractional label such as 0.7 to class 0; NeuralKit rejects it.
        if testCase.kerasRaised || !isIntegral {
            let message = errorMessage { _ = try compute(testCase, labels: .values(testCase.labels)) }
            #expect(message != nil, "expected an error")
            return
        }
        let expected = try #require(testCase.expected)
        var targetForms: [Targets] = [.values(testCase.labels)]
        if testCase.function.hasPrefix("sparse") {
            targetForms.append(.classIndices(Tensor(shape: testCase.labels.shape, scalars: testCase.labels.scalars.map { Int($0) })))
        }
        for targets in targetForms {
            let actual = try compute(testCase, labels: targets)
            #expect(actual.count == expected.count)
            for (a, e) in zip(actual, expected) {
                #expect(abs(a - e) <= 1e-5 * max(1, abs(e)), "got \(a), Keras \(e)")
            }
        }
    }

    private func compute(_ testCase: KerasCase, labels: Targets) throws -> [Float] {
        switch testCase.function {
        case "sparse_categorical_crossentropy":
            let loss = SparseCategoricalCrossentropy(
                fromLogits: testCase.fromLogits, ignoreClass: testCase.ignoreClass, reduction: testCase.reduction)
            return try loss(labels, testCase.predictions, sampleWeight: testCase.sampleWeight).scalars
        case "categorical_crossentropy":
            let loss = CategoricalCrossentropy(
                fromLogits: testCase.fromLogits, labelSmoothing: testCase.labelSmoothing, reduction: testCase.reduction)
            return try loss(labels, testCase.predictions, sampleWeight: testCase.sampleWeight).scalars
        case "sparse_categorical_accuracy":
            return try metricResult(SparseCategoricalAccuracy(), labels, testCase.predictions)
        case "categorical_accuracy":
            return try metricResult(CategoricalAccuracy(), labels, testCase.predictions)
        case "sparse_top_k_categorical_accuracy":
            return try metricResult(SparseTopKCategoricalAccuracy(k: testCase.k), labels, testCase.predictions)
        default:
            Issue.record("unknown function \(testCase.function) in the fixture file")
            return []
        }
    }

    private func metricResult(_ metric: some Metric, _ labels: Targets, _ predictions: Tensor<Float>) throws -> [Float] {
        try metric.update(targets: labels, predictions: predictions)
        return [metric.result]
    }
}
