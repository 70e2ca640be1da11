import Foundation
import NeuralKit

let predictUsage = """
    Usage: neuralkit predict --model FILE [--json] [--top K] [--framing auto|mnist|none] IMAGE...

    Loads a model saved with Sequential.save(to:) and prints, for each input image, the
    predicted class and the K most likely classes with their probabilities.

    Each IMAGE is a PNG file of any size and colour type, or an IDX file of images such as
    t10k-images-idx3-ubyte.gz, in which every image is one input. PNG images are converted
    to gray, inverted when their border is mostly light (MNIST digits are white on black),
    then framed or scaled to the model's input height and width (see --framing). IDX
    images are divided by 255 and, when their size differs from the model's, scaled to it
    by area averaging.

    Options:
      --model FILE            the saved model (required); its input must be (height, width, 1)
      --top K                 how many of the most likely classes to list per image, at least 1;
                              at most the number of classes are listed (default: 3)
      --json                  print one JSON document instead of one line per image
      --framing auto|mnist|none
                              mnist: frame each PNG digit as MNIST framed its digits:
                              crop to the strokes, scale by area averaging so that the
                              longer side spans 20/28 of the input, and centre the strokes'
                              centre of mass; none: scale the whole PNG image by area
                              averaging; auto: mnist for models with 28x28x1 inputs, none
                              for others (default: auto)
      -h, --help              show this help
    """

struct PredictSettings {
    var modelFile: URL
    var imageFiles: [URL]
    var top: Int
    var json: Bool
    /// `auto`, `mnist` or `none`, as --framing takes.
    var framing = "auto"
}

/// One input's result: the file, the image's position in it, and the classes by probability.
struct ImagePrediction: Encodable {
    var file: String
    /// The image's index in an IDX file, or 0 for a PNG file.
    var index: Int
    var format: String
    /// Whether the image was inverted because its border is mostly light.
    var inverted: Bool
    /// Whether the image was cropped and centred as MNIST digits are; false for IDX
    /// images, without MNIST framing, and for a PNG image without strokes.
    var framed: Bool
    var predictedClass: Int
    var top: [ClassProbability]

    enum CodingKeys: String, CodingKey {
        case file, index, format, inverted, framed, predictedClass = "class", top
    }
}

struct ClassProbability: Encodable {
    var classIndex: Int
    var probability: Float

    enum CodingKeys: String, CodingKey {
        case classIndex = "class", probability
    }
}

/// The document `--json` prints.
struct PredictionReport: Encodable {
    var model: String
    var inputShape: [Int]
    var classes: Int
    var predictions: [ImagePrediction]
}

func runPredictCommand(_ arguments: [String]) -> Int32 {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(predictUsage)
        return 0
    }
    let settings: PredictSettings
    do {
        settings = try parsePredictSettings(arguments)
    } catch {
        FileHandle.standardError.write(Data("neuralkit predict: error: \(error)\nRun 'neuralkit predict --help' for the options.\n".utf8))
        return 2
    }
    do {
        let report = try predictImages(settings)
        if settings.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            for prediction in report.predictions { print(describe(prediction)) }
        }
        return 0
    } catch {
        FileHandle.standardError.write(Data("neuralkit predict: error: \(error)\n".utf8))
        return 1
    }
}

/// Separates the options from the image paths. Everything after `--` is an image path.
func parsePredictSettings(_ arguments: [String]) throws -> PredictSettings {
    let valued: Set<String> = ["model", "top", "framing"]
    var optionArguments: [String] = []
    var images: [String] = []
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        if argument == "--" {
            images += arguments[(index + 1)...]
            break
        }
        if argument.hasPrefix("--") {
            optionArguments.append(argument)
            if valued.contains(String(argument.dropFirst(2))), index + 1 < arguments.count {
                optionArguments.append(arguments[index + 1])
                index += 1
            }
        } else {
            images.append(argument)
        }
        index += 1
    }

    let options = try CommandLineOptions(optionArguments, valued: valued, switches: ["json"])
    guard let model = options.string("model") else {
        throw UsageError("--model FILE is required: the model file written by Sequential.save(to:)")
    }
    guard !images.isEmpty else {
        throw UsageError("no IMAGE given; pass one or more PNG images or IDX image files after the options")
    }
    return PredictSettings(
        modelFile: URL(fileURLWithPath: model), imageFiles: images.map { URL(fileURLWithPath: $0) },
        top: try options.integer("top", default: 3, range: 1...Int.max), json: options.has("json"),
        framing: try options.choice("framing", default: "auto", choices: ["auto", "mnist", "none"]))
}

func predictImages(_ settings: PredictSettings) throws -> PredictionReport {
    let modelPath = settings.modelFile.path
    let model = try Sequential.load(from: settings.modelFile)
    if model.inputShape == nil, let input = model.layers.first as? Input {
        // A model saved before compile or fit is not built yet, but its Input layer gives the shape.
        do {
            try model.build(inputShape: input.shape)
        } catch {
            throw NeuralKitError.invalidData(file: modelPath, reason: "the model cannot be built for its Input shape: \(error)")
        }
    }
    guard let inputShape = model.inputShape, inputShape.count == 3, inputShape[2] == 1 else {
        let shape = model.inputShape.map { formatShape($0, unknownBatch: true) } ?? "unknown to it (it has no Input layer and was never built)"
        throw NeuralKitError.invalidData(
            file: modelPath,
            reason: "the model's input shape is \(shape), but predict needs a model for (height, width, 1) images, "
                + "such as (None, 28, 28, 1)")
    }
    guard let outputShape = model.outputShape, outputShape.count == 1 else {
        throw NeuralKitError.invalidData(
            file: modelPath,
            reason: "the model outputs shape \(formatShape(model.outputShape ?? [], unknownBatch: true)), "
                + "but predict needs one score per class, shape (None, classes)")
    }
    let (height, width) = (inputShape[0], inputShape[1])

    // Read every file before predicting, so that all bad files are reported together.
    var files: [ImageFile] = []
    var failures: [String] = []
    for url in settings.imageFiles {
        do {
            files.append(try readGrayscaleImages(from: url))
        } catch {
            failures.append(String(describing: error))
        }
    }
    guard failures.isEmpty else {
        throw ImageReadErrors(messages: failures)
    }

    let framesDigits = settings.framing == "mnist" || (settings.framing == "auto" && inputShape == [28, 28, 1])
    var predictions: [ImagePrediction] = []
    var prepared: [GrayscaleImage] = []
    for file in files {
        for (index, image) in file.images.enumerated() {
            let inverted = file.format == .png && image.hasLightBorder
            let oriented = inverted ? image.inverted() : image
            let framed = file.format == .png && framesDigits ? oriented.framedLikeMNIST(width: width, height: height) : nil
            prepared.append(framed ?? oriented.resized(width: width, height: height))
            predictions.append(
                ImagePrediction(
                    file: file.url.relativePath, index: index, format: file.format.rawValue, inverted: inverted,
                    framed: framed != nil, predictedClass: 0, top: []))
        }
    }

    let outputs = try model.predict(imageTensor(prepared), batchSize: 256)
    let probabilities = classProbabilities(outputs, model: model)
    for (row, rowProbabilities) in probabilities.enumerated() {
        let ranked = rowProbabilities.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
        predictions[row].predictedClass = ranked[0].offset
        predictions[row].top = ranked.prefix(settings.top).map { ClassProbability(classIndex: $0.offset, probability: $0.element) }
    }
    return PredictionReport(
        model: modelPath, inputShape: inputShape, classes: probabilities.first?.count ?? 0, predictions: predictions)
}

/// Converts each output row to class probabilities. A softmax output is used as it is,
/// and other outputs are taken as logits and passed through softmax. A single sigmoid (or logit)
/// output becomes the two probabilities of classes 0 and 1.
func classProbabilities(_ outputs: Tensor<Float>, model: Sequential) -> [[Float]] {
    let classes = outputs.shape.last ?? 1
    let activation = (model.layers.last as? any ActivatedLayer)?.activation
    let rows = outputs.shape[0]
    return (0..<rows).map { row in
        let values = Array(outputs.scalars[(row * classes)..<((row + 1) * classes)])
        if classes == 1 {
            let probability = activation == .sigmoid ? values[0] : 1 / (1 + exp(-values[0]))
            return [1 - probability, probability]
        }
        if activation == .softmax { return values }
        let largest = values.max() ?? 0
        let exponentials = values.map { exp($0 - largest) }
        let sum = exponentials.reduce(0, +)
        return exponentials.map { $0 / sum }
    }
}

/// The messages of every input file that could not be read, one per line.
struct ImageReadErrors: Error, CustomStringConvertible {
    var messages: [String]

    var description: String { messages.joined(separator: "\nneuralkit predict: error: ") }
}

/// Formats one text line, such as `digit.png: predicted 7; top 3: 7 (0.9812), 1 (0.0101), 2 (0.0040)`.
/// Images from an IDX file are named `file[index]`.
func describe(_ prediction: ImagePrediction) -> String {
    let name = prediction.format == ImageFileFormat.idx.rawValue ? "\(prediction.file)[\(prediction.index)]" : prediction.file
    let top = prediction.top.map { "\($0.classIndex) (\(String(format: "%.4f", $0.probability)))" }.joined(separator: ", ")
    return "\(name): predicted \(prediction.predictedClass); top \(prediction.top.count): \(top)"
}
