import Foundation

/// A labelled image data set split into training and test samples.
public struct ImageDataset: Sendable {
    /// Training images, `(N, height, width, 1)`, scaled to [0, 1].
    public var trainImages: Tensor<Float>
    /// Training labels, `(N)`.
    public var trainLabels: Tensor<UInt8>
    public var testImages: Tensor<Float>
    public var testLabels: Tensor<UInt8>
}

/// The same data set with pixels kept as bytes in [0, 255], in a quarter of the memory of
/// `ImageDataset`. Wrap the images in `ScaledBytes` to train on them as floats.
public struct ByteImageDataset: Sendable {
    /// Training images, `(N, height, width, 1)`.
    public var trainImages: Tensor<UInt8>
    public var trainLabels: Tensor<UInt8>
    public var testImages: Tensor<UInt8>
    public var testLabels: Tensor<UInt8>
}

/// Loads MNIST, or a data set in the same layout such as Fashion-MNIST, from the four
/// IDX files that LeCun et al. distribute:
/// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte`, each gzip-compressed (`.gz`) or plain.
public enum MNIST {
    public static let fileNames = [
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
    ]

    /// The number of classes; labels outside `0..<classCount` are rejected.
    public static let classCount = 10

    /// Loads the four files from `directory`; pixels are divided by 255 and an
    /// axis of 1 channel is appended, as the Keras MNIST example does.
    ///
    /// - Throws: `NeuralKitError.invalidData` naming the folder or file that is
    ///   missing, corrupt or inconsistent (image and label counts, label values).
    public static func load(from directory: URL) throws -> ImageDataset {
        let bytes = try loadBytes(from: directory)
        return ImageDataset(
            trainImages: ScaledBytes(bytes.trainImages, divisor: 255).floats(), trainLabels: bytes.trainLabels,
            testImages: ScaledBytes(bytes.testImages, divisor: 255).floats(), testLabels: bytes.testLabels)
    }

    /// Loads the four files from `directory` as `load(from:)` does, but keeps the pixels
    /// as bytes in [0, 255].
    public static func loadBytes(from directory: URL) throws -> ByteImageDataset {
        try requireFolder(directory)
        let (trainImages, trainLabels) = try loadPair(directory, images: fileNames[0], labels: fileNames[1])
        let (testImages, testLabels) = try loadPair(directory, images: fileNames[2], labels: fileNames[3])
        return ByteImageDataset(trainImages: trainImages, trainLabels: trainLabels, testImages: testImages, testLabels: testLabels)
    }

    /// Loads only the test split (`t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`)
    /// from `directory`, with pixels divided by 255, for evaluating a trained model.
    public static func loadTest(from directory: URL) throws -> (images: Tensor<Float>, labels: Tensor<UInt8>) {
        try requireFolder(directory)
        let (images, labels) = try loadPair(directory, images: fileNames[2], labels: fileNames[3])
        return (ScaledBytes(images, divisor: 255).floats(), labels)
    }

    /// Throws `NeuralKitError.invalidData` unless `directory` is an existing folder.
    private static func requireFolder(_ directory: URL) throws {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory)
        if exists && !isDirectory.boolValue {
            throw NeuralKitError.invalidData(
                file: directory.path, reason: "is a file, not a folder; pass the folder that contains the four IDX files")
        }
        guard exists else {
            throw NeuralKitError.invalidData(
                file: directory.path, reason: "folder not found; it must contain \(fileNames.map { $0 + ".gz" }.joined(separator: ", "))")
        }
    }

    private static func loadPair(_ directory: URL, images: String, labels: String) throws -> (Tensor<UInt8>, Tensor<UInt8>) {
        let imageURL = try locate(images, in: directory)
        let labelURL = try locate(labels, in: directory)
        let imageArray = try IDXReader.read(imageURL, expectedDimensionCount: 3)
        let labelArray = try IDXReader.read(labelURL, expectedDimensionCount: 1)
        guard imageArray.dimensions[0] == labelArray.dimensions[0] else {
            throw NeuralKitError.invalidData(
                file: labelURL.path,
                reason: "has \(labelArray.dimensions[0]) labels, but \(imageURL.lastPathComponent) has \(imageArray.dimensions[0]) images")
        }
        if let index = labelArray.bytes.firstIndex(where: { Int($0) >= classCount }) {
            throw NeuralKitError.invalidData(
                file: labelURL.path, reason: "label \(labelArray.bytes[index]) at index \(index) is outside 0..<\(classCount)")
        }

        let imageTensor = Tensor(shape: imageArray.dimensions + [1], scalars: imageArray.bytes)
        return (imageTensor, Tensor(shape: labelArray.dimensions, scalars: labelArray.bytes))
    }

    /// Finds `name.gz`, or `name` uncompressed, in `directory`.
    private static func locate(_ name: String, in directory: URL) throws -> URL {
        for candidate in [name + ".gz", name] {
            let url = directory.appendingPathComponent(candidate)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        throw NeuralKitError.invalidData(
            file: directory.appendingPathComponent(name + ".gz").path, reason: "file not found (nor \(name) uncompressed)")
    }
}
