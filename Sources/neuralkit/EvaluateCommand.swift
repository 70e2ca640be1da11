import Foundation
import NeuralKit

let evaluateUsage = """
    Usage: neuralkit evaluate --model FILE [options]

    Loads a model saved with Sequential.save(to:) and prints its loss and accuracy on the
    test split of an MNIST-layout folder, with the loss the model was compiled with.

    Options:
      --model FILE            the saved model (required)
      --data DIR              folder with the MNIST-layout test files t10k-images-idx3-ubyte.gz
                              and t10k-labels-idx1-ubyte.gz (the training files may be absent);
                              Debian's dataset-fashion-mnist installs Fashion-MNIST in this layout to
                              /usr/share/datasets/fashion-mnist
                              (default: the MNIST copy in this repository, \(defaultDataDirectory.path))
      --batch-size N          samples per evaluation step, at least 1 (default: 250)
      --confusion-matrix      also print the confusion matrix and each class's precision and recall
                              (default: off)
      -h, --help              show this help
    """

struct EvaluateSettings {
    var modelFile: URL
    var dataDirectory: URL
    var batchSize: Int
    var printsConfusionMatrix: Bool
}

func runEvaluateCommand(_ arguments: [String]) -> Int32 {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(evaluateUsage)
        return 0
    }
    let settings: EvaluateSettings
    do {
        let options = try CommandLineOptions(arguments, valued: ["model", "data", "batch-size"], switches: ["confusion-matrix"])
        guard let model = options.string("model") else {
            throw UsageError("--model FILE is required: the model file to evaluate, written by Sequential.save(to:)")
        }
        settings = EvaluateSettings(
            modelFile: URL(fileURLWithPath: model),
            dataDirectory: try dataFolderOption(options),
            batchSize: try options.integer("batch-size", default: 250, range: 1...Int.max),
            printsConfusionMatrix: options.has("confusion-matrix"))
    } catch {
        FileHandle.standardError.write(Data("neuralkit evaluate: error: \(error)\nRun 'neuralkit evaluate --help' for the options.\n".utf8))
        return 2
    }
    do {
        try evaluateSavedModel(settings)
        return 0
    } catch {
        FileHandle.standardError.write(Data("neuralkit evaluate: error: \(error)\n".utf8))
        return 1
    }
}

func evaluateSavedModel(_ settings: EvaluateSettings) throws {
    let modelPath = settings.modelFile.path
    let model = try Sequential.load(from: settings.modelFile)
    guard let loss = model.loss else {
        throw NeuralKitError.invalidData(
            file: modelPath, reason: "the model was saved without compile, so it has no loss to evaluate; compile it before saving")
    }
    let data = try MNIST.loadTest(from: settings.dataDirectory)
    let sampleShape = Array(data.images.shape.dropFirst())
    guard model.inputShape == sampleShape else {
        let modelShape = model.inputShape.map { formatShape($0, unknownBatch: true) } ?? "unknown to it (it has no Input layer and was never built)"
        throw NeuralKitError.invalidData(
            file: modelPath,
            reason: "the model's input shape is \(modelShape), but the images in \(settings.dataDirectory.path) have shape "
                + "\(formatShape(sampleShape, unknownBatch: true))")
    }
    guard let classes = model.outputShape?.last, model.outputShape?.count == 1, classes >= MNIST.classCount else {
        throw NeuralKitError.invalidData(
            file: modelPath,
            reason: "the model outputs shape \(formatShape(model.outputShape ?? [], unknownBatch: true)), but the labels need "
                + "one score per class, shape (None, \(MNIST.classCount))")
    }

    let evaluation: [String: Float]
    if loss is CategoricalCrossentropy {
        evaluation = try model.evaluate(
            x: data.images, y: try toCategorical(data.labels, numClasses: classes), batchSize: settings.batchSize)
    } else {
        evaluation = try model.evaluate(x: data.images, y: data.labels, batchSize: settings.batchSize)
    }
    var accuracy = evaluation["accuracy"]
    if accuracy == nil {
        // The model was compiled without the accuracy metric, so compute it from the predictions.
        let predicted = try predictedClasses(try model.predict(data.images, batchSize: settings.batchSize))
        let correct = zip(predicted, data.labels.scalars).filter { $0.0 == Int($0.1) }.count
        accuracy = Float(correct) / Float(predicted.count)
    }
    print(String(format: "Test loss: %.4f / Test accuracy: %.4f", evaluation["loss"] ?? .nan, accuracy ?? .nan))
    if settings.printsConfusionMatrix {
        try printConfusionMatrix(
            model: model, images: data.images, labels: data.labels, batchSize: settings.batchSize,
            title: "Test confusion matrix")
    }
}

/// Prints the confusion matrix of `model`'s predictions on `images` against `labels`,
/// with per-class precision and recall, under `title`.
func printConfusionMatrix(model: Sequential, images: some ModelInput, labels: Tensor<UInt8>, batchSize: Int, title: String) throws {
    let outputs = try model.predict(images, batchSize: batchSize)
    let predictions = try predictedClasses(outputs)
    let classes = max(MNIST.classCount, outputs.shape.last ?? 0)
    let matrix = try confusionMatrix(labels: labels.scalars.map(Int.init), predictions: predictions, classes: classes)
    print("\(title): rows are true classes, columns predicted classes")
    print(matrix.formatted())
}
