import CCairo
import Foundation
import NeuralKit
import Testing

/// 8x8 training images for three classes: 0 is black, 1 a centred disc, 2 a horizontal bar.
func shapeImage(class classIndex: Int, noise: Float = 0, generator: inout SeededGenerator) -> [Float] {
    (0..<64).map { index in
        let (x, y) = (Float(index % 8) + 0.5, Float(index / 8) + 0.5)
        let value: Float
        switch classIndex {
        case 1: value = ((x - 4) * (x - 4) + (y - 4) * (y - 4)).squareRoot() < 2.2 ? 1 : 0
        case 2: value = (3..<5).contains(index / 8) ? 1 : 0
        default: value = 0
        }
        return min(1, max(0, value + noise * (generator.nextUnitFloat() - 0.5)))
    }
}

/// Files shared by the predict tests: a trained 8x8 three-class model and input images.
struct PredictFixture {
    let folder: URL
    let model: URL
    /// A white disc on black, 64x64 RGB.
    let lightDisc: URL
    /// A black disc on white, 64x64 RGBA, which predict inverts.
    let darkDisc: URL
    /// Three 8x8 images in one IDX file, one of each class in order.
    let idx: URL

    static let shared: PredictFixture = {
        do {
            return try PredictFixture()
        } catch {
            fatalError("cannot create the predict test files: \(error)")
        }
    }()

    private init() throws {
        folder = try temporaryFolder()
        var generator = SeededGenerator(seed: 3)
        var images: [Float] = []
        var labels: [Int32] = []
        for sample in 0..<60 {
            images += shapeImage(class: sample % 3, noise: 0.3, generator: &generator)
            labels.append(Int32(sample % 3))
        }
        let network = Sequential([Input(shape: [8, 8, 1]), Flatten(), Dense(units: 3, activation: .softmax)], seed: 5)
        try network.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(learningRate: 0.05), metrics: ["accuracy"])
        try network.fit(
            x: Tensor(shape: [60, 8, 8, 1], scalars: images), y: Tensor(shape: [60], scalars: labels),
            batchSize: 20, epochs: 60, verbose: .silent)
        model = folder.appendingPathComponent("shapes.nkmodel")
        try network.save(to: model)

        lightDisc = folder.appendingPathComponent("light-disc.png")
        writeDiscPNG(to: lightDisc, size: 64, lightOnDark: true)
        darkDisc = folder.appendingPathComponent("dark-disc.png")
        writeDiscPNG(to: darkDisc, size: 64, lightOnDark: false, format: CAIRO_FORMAT_ARGB32)
        idx = folder.appendingPathComponent("shapes-idx3-ubyte")
        let bytes = (0..<3).flatMap { shapeImage(class: $0, generator: &generator).map { UInt8($0 * 255) } }
        try writeIDX(to: idx, dimensions: [3, 8, 8], bytes: bytes)
    }
}

@Suite struct PredictCommandTests {
    let fixture = PredictFixture.shared

    @Test func textLinePerImage() throws {
        let result = try runNeuralKit(["predict", "--model", fixture.model.path, fixture.lightDisc.path, fixture.darkDisc.path])
        #expect(result.status == 0, "\(result.error)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(result.output)")
        for (line, file) in zip(lines, [fixture.lightDisc, fixture.darkDisc]) {
            let pattern = #"^\#(NSRegularExpression.escapedPattern(for: file.path)): predicted 1; top 3: 1 \(\d\.\d{4}\), [02] \(\d\.\d{4}\), [02] \(\d\.\d{4}\)$"#
            #expect(line.range(of: pattern, options: .regularExpression) != nil, "\(line)")
        }
    }

    @Test func jsonDocumentListsEveryImage() throws {
        let result = try runNeuralKit(
            ["predict", "--json", "--model", fixture.model.path, fixture.lightDisc.path, fixture.darkDisc.path, fixture.idx.path])
        #expect(result.status == 0, "\(result.error)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(document["model"] as? String == fixture.model.path)
        #expect(document["inputShape"] as? [Int] == [8, 8, 1])
        #expect(document["classes"] as? Int == 3)
        let predictions = try #require(document["predictions"] as? [[String: Any]])
        #expect(predictions.count == 5)

        let expected: [(file: URL, index: Int, format: String, inverted: Bool, predicted: Int)] = [
            (fixture.lightDisc, 0, "png", false, 1), (fixture.darkDisc, 0, "png", true, 1),
            (fixture.idx, 0, "idx", false, 0), (fixture.idx, 1, "idx", false, 1), (fixture.idx, 2, "idx", false, 2),
        ]
        for (prediction, expectation) in zip(predictions, expected) {
            #expect(prediction["file"] as? String == expectation.file.path)
            #expect(prediction["index"] as? Int == expectation.index)
            #expect(prediction["format"] as? String == expectation.format)
            #expect(prediction["inverted"] as? Bool == expectation.inverted)
            #expect(prediction["class"] as? Int == expectation.predicted, "\(prediction)")
            let top = try #require(prediction["top"] as? [[String: Any]])
            let probabilities = top.compactMap { ($0["probability"] as? NSNumber)?.doubleValue }
            #expect(top.count == 3)
            #expect(top.first?["class"] as? Int == expectation.predicted)
            #expect(probabilities == probabilities.sorted(by: >))
            #expect(abs(probabilities.reduce(0, +) - 1) < 1e-4)
        }
    }

    @Test func framingAppliesToPNGsOnly() throws {
        for (framing, framesPNG) in [("auto", false), ("mnist", true), ("none", false)] {
            let result = try runNeuralKit(
                ["predict", "--json", "--framing", framing, "--model", fixture.model.path, fixture.lightDisc.path, fixture.idx.path])
            #expect(result.status == 0, "\(result.error)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
            let predictions = try #require(document["predictions"] as? [[String: Any]])
            #expect(predictions.map { $0["framed"] as? Bool } == [framesPNG, false, false, false], "--framing \(framing)")
        }
    }

    @Test func framingRejectsUnknownValue() throws {
        let result = try runNeuralKit(["predict", "--framing", "centre", "--model", fixture.model.path, fixture.lightDisc.path])
        #expect(result.status == 2)
        #expect(result.error.contains("--framing"), "\(result.error)")
    }

    @Test func topOptionSetsListLength() throws {
        let one = try runNeuralKit(["predict", "--model", fixture.model.path, "--top", "1", fixture.lightDisc.path])
        #expect(one.status == 0, "\(one.error)")
        #expect(one.output.contains(": predicted 1; top 1: 1 ("), "\(one.output)")
        #expect(!one.output.contains(", "), "\(one.output)")

        let many = try runNeuralKit(["predict", "--model", fixture.model.path, "--top=7", fixture.lightDisc.path])
        #expect(many.status == 0, "\(many.error)")
        #expect(many.output.contains(": predicted 1; top 3: 1 ("), "\(many.output)")
    }

    @Test func idxImagesNamedByIndex() throws {
        let result = try runNeuralKit(["predict", "--model", fixture.model.path, fixture.idx.path])
        #expect(result.status == 0, "\(result.error)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        for (index, line) in lines.enumerated() {
            #expect(line.hasPrefix("\(fixture.idx.path)[\(index)]: predicted \(index); top 3: \(index) ("), "\(line)")
        }
    }

    @Test func errorsNameFileAndProblem() throws {
        let folder = try temporaryFolder()
        let corruptModel = folder.appendingPathComponent("corrupt.nkmodel")
        try Data(repeating: 7, count: 100).write(to: corruptModel)
        let flatModel = folder.appendingPathComponent("flat.nkmodel")
        try Sequential([Input(shape: [64]), Dense(units: 3, activation: .softmax)]).save(to: flatModel)
        let notPNG = folder.appendingPathComponent("notes.png")
        try Data("plain text".utf8).write(to: notPNG)
        let corruptPNG = folder.appendingPathComponent("corrupt.png")
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0]).write(to: corruptPNG)
        let labels = folder.appendingPathComponent("labels-idx1-ubyte")
        try writeIDX(to: labels, dimensions: [3], bytes: [0, 1, 2])
        let missing = folder.appendingPathComponent("missing.png")
        let model = fixture.model.path

        let cases: [(arguments: [String], message: String)] = [
            (["--model", folder.appendingPathComponent("absent.nkmodel").path, fixture.lightDisc.path],
             "\(folder.path)/absent.nkmodel: file not found"),
            (["--model", corruptModel.path, fixture.lightDisc.path], "\(corruptModel.path): "),
            (["--model", flatModel.path, fixture.lightDisc.path],
             "\(flatModel.path): the model's input shape is (None, 64), but predict needs a model for (height, width, 1) images"),
            (["--model", model, missing.path], "\(missing.path): file not found"),
            (["--model", model, notPNG.path], "\(notPNG.path): is not a PNG image or an IDX file"),
            (["--model", model, corruptPNG.path], "\(corruptPNG.path): is not a valid PNG image"),
            (["--model", model, labels.path], "\(labels.path): contains 1-D data of shape (3,), not 2-D images"),
        ]
        for (arguments, message) in cases {
            let result = try runNeuralKit(["predict"] + arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.error.contains(message), "\(result.error)")
            #expect(result.output.isEmpty, "\(result.output)")
        }
    }

    @Test func everyBadImageReported() throws {
        let folder = try temporaryFolder()
        let first = folder.appendingPathComponent("first.png")
        let second = folder.appendingPathComponent("second.png")
        let result = try runNeuralKit(["predict", "--model", fixture.model.path, first.path, fixture.lightDisc.path, second.path])
        #expect(result.status == 1)
        #expect(result.error.contains("neuralkit predict: error: \(first.path): file not found"), "\(result.error)")
        #expect(result.error.contains("neuralkit predict: error: \(second.path): file not found"), "\(result.error)")
    }

    @Test(arguments: [
        ([String](), "--model FILE is required"),
        (["--model", "model.nkmodel"], "no IMAGE given; pass one or more PNG images or IDX image files"),
        (["--model", "model.nkmodel", "--top", "0", "a.png"], "--top must be an integer of at least 1, got '0'"),
        (["--model", "model.nkmodel", "--colour", "a.png"], "unknown option --colour"),
    ])
    func usageErrorsRejected(arguments: [String], message: String) throws {
        let result = try runNeuralKit(["predict"] + arguments)
        #expect(result.status == 2)
        #expect(result.error.contains(message), "\(result.error)")
        #expect(result.output.isEmpty)
    }

    @Test func helpListsOptions() throws {
        let result = try runNeuralKit(["predict", "--help"])
        #expect(result.status == 0)
        for option in ["--model", "--top", "--json"] {
            #expect(result.output.contains(option), "help lacks \(option)")
        }
    }
}

/// A model of MNIST digits trained briefly, saved once for the evaluate tests.
struct EvaluateFixture {
    let folder: URL
    /// Compiled with SparseCategoricalCrossentropy and the accuracy metric.
    let sparseModel: URL
    let sparseResult: [String: Float]
    /// Compiled with CategoricalCrossentropy and no metrics.
    let categoricalModel: URL
    let categoricalResult: [String: Float]
    let categoricalAccuracy: Float

    static let shared: EvaluateFixture = {
        do {
            return try EvaluateFixture()
        } catch {
            fatalError("cannot create the evaluate test models: \(error)")
        }
    }()

    private init() throws {
        folder = try temporaryFolder()
        let data = sharedMNIST
        let images = data.trainImages.slicing(rows: 0..<2000)
        let labels = data.trainLabels.slicing(rows: 0..<2000)

        let sparse = Sequential([Input(shape: [28, 28, 1]), Flatten(), Dense(units: 10, activation: .softmax)], seed: 1)
        try sparse.compile(loss: SparseCategoricalCrossentropy(), optimizer: Adam(), metrics: ["accuracy"])
        try sparse.fit(x: images, y: labels, batchSize: 100, epochs: 2, verbose: .silent)
        sparseModel = folder.appendingPathComponent("sparse.nkmodel")
        try sparse.save(to: sparseModel)
        sparseResult = try sparse.evaluate(x: data.testImages, y: data.testLabels, batchSize: 250)

        let categorical = Sequential([Input(shape: [28, 28, 1]), Flatten(), Dense(units: 10, activation: .softmax)], seed: 2)
        try categorical.compile(loss: CategoricalCrossentropy(), optimizer: Adam())
        try categorical.fit(x: images, y: try toCategorical(labels, numClasses: 10), batchSize: 100, epochs: 2, verbose: .silent)
        categoricalModel = folder.appendingPathComponent("categorical.nkmodel")
        try categorical.save(to: categoricalModel)
        categoricalResult = try categorical.evaluate(
            x: data.testImages, y: try toCategorical(data.testLabels, numClasses: 10), batchSize: 250)
        let predicted = try predictedClasses(try categorical.predict(data.testImages))
        let correct = zip(predicted, data.testLabels.scalars).filter { $0.0 == Int($0.1) }.count
        categoricalAccuracy = Float(correct) / Float(predicted.count)
    }
}

/// Parses the loss and accuracy from a `Test loss: x / Test accuracy: y` line, or nil.
func parseTestLine(_ output: String) -> (loss: Float, accuracy: Float)? {
    for line in output.split(separator: "\n") {
        let parts = line.split(separator: " ")
        if parts.count == 7, line.hasPrefix("Test loss: "), let loss = Float(parts[2]), let accuracy = Float(parts[6]) {
            return (loss, accuracy)
        }
    }
    return nil
}

@Suite struct EvaluateCommandTests {
    let fixture = EvaluateFixture.shared

    @Test func sparseModelMatchesLibrary() throws {
        let result = try runNeuralKit(["evaluate", "--model", fixture.sparseModel.path])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.range(of: #"^Test loss: \d+\.\d{4} / Test accuracy: \d\.\d{4}\n$"#, options: .regularExpression) != nil,
                "\(result.output)")
        let line = try #require(parseTestLine(result.output))
        #expect(abs(line.loss - fixture.sparseResult["loss"]!) < 2e-4)
        #expect(abs(line.accuracy - fixture.sparseResult["accuracy"]!) < 2e-4)
        #expect(line.accuracy > 0.5, "two epochs on 2,000 samples should beat chance (0.1) by far")
    }

    @Test func categoricalModelWithoutMetrics() throws {
        let result = try runNeuralKit(["evaluate", "--model", fixture.categoricalModel.path, "--batch-size", "1000"])
        #expect(result.status == 0, "\(result.error)")
        let line = try #require(parseTestLine(result.output))
        #expect(abs(line.loss - fixture.categoricalResult["loss"]!) < 2e-4)
        #expect(abs(line.accuracy - fixture.categoricalAccuracy) < 2e-4)
    }

    @Test func confusionMatrixPrinted() throws {
        let result = try runNeuralKit(["evaluate", "--model", fixture.sparseModel.path, "--confusion-matrix"])
        #expect(result.status == 0, "\(result.error)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("Test confusion matrix: rows are true classes, columns predicted classes"))
        let header = try #require(lines.first { $0.hasPrefix("true\\pred") })
        #expect(header.split(separator: " ").count == 11)
        let rows = lines.filter { $0.range(of: #"^ +\d( +\d+){10}$"#, options: .regularExpression) != nil }
        #expect(rows.count == 10, "\(result.output)")
        let counted = rows.flatMap { $0.split(separator: " ").dropFirst().compactMap { Int($0) } }.reduce(0, +)
        #expect(counted == 10000)
        let figures = lines.filter { $0.range(of: #"^ +\d +\d\.\d{4} +\d\.\d{4}$"#, options: .regularExpression) != nil }
        #expect(figures.count == 10, "\(result.output)")
    }

    @Test func modelOfOtherInputShapeRejected() throws {
        let result = try runNeuralKit(["evaluate", "--model", PredictFixture.shared.model.path])
        #expect(result.status == 1)
        #expect(result.error.contains(
            "\(PredictFixture.shared.model.path): the model's input shape is (None, 8, 8, 1), but the images in "),
                "\(result.error)")
        #expect(result.error.contains("have shape (None, 28, 28, 1)"), "\(result.error)")
    }

    @Test func missingModelOptionRejected() throws {
        let result = try runNeuralKit(["evaluate"])
        #expect(result.status == 2)
        #expect(result.error.contains("--model FILE is required"), "\(result.error)")
    }

    @Test func missingDataFolderNamed() throws {
        let result = try runNeuralKit(["evaluate", "--model", fixture.sparseModel.path, "--data", "/nonexistent/fashion"])
        #expect(result.status == 1)
        #expect(result.error.contains("/nonexistent/fashion: folder not found"), "\(result.error)")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")))
    func fashionMNISTFromDebianPackage() throws {
        let result = try runNeuralKit(["evaluate", "--model", fixture.sparseModel.path, "--data", "/usr/share/datasets/fashion-mnist"])
        #expect(result.status == 0, "\(result.error)")
        let line = try #require(parseTestLine(result.output))
        #expect(line.loss.isFinite)
        #expect((0...1).contains(line.accuracy))
    }
}
