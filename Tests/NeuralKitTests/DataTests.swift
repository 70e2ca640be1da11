import Foundation
import Testing
import NeuralKit

@Suite struct MNISTTests {
    @Test func shapesAndScale() {
        #expect(sharedMNIST.trainImages.shape == [60_000, 28, 28, 1])
        #expect(sharedMNIST.trainLabels.shape == [60_000])
        #expect(sharedMNIST.testImages.shape == [10_000, 28, 28, 1])
        #expect(sharedMNIST.testLabels.shape == [10_000])
        #expect(sharedMNIST.trainImages.scalars.min() == 0)
        #expect(sharedMNIST.trainImages.scalars.max() == 1)
    }

    @Test func firstLabels() {
        #expect(Array(sharedMNIST.trainLabels.scalars.prefix(10)) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
        #expect(Array(sharedMNIST.testLabels.scalars.prefix(10)) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    }

    @Test func labelCounts() {
        func counts(_ labels: Tensor<UInt8>) -> [Int] {
            var result = [Int](repeating: 0, count: 10)
            for label in labels.scalars { result[Int(label)] += 1 }
            return result
        }
        #expect(counts(sharedMNIST.trainLabels) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
        #expect(counts(sharedMNIST.testLabels) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    }

    @Test func meanPixelValues() {
        func mean(_ images: Tensor<Float>) -> Double {
            images.scalars.reduce(0.0) { $0 + Double($1) } * 255 / Double(images.count)
        }
        #expect(abs(mean(sharedMNIST.trainImages) - 33.3184) < 1e-3)
        #expect(abs(mean(sharedMNIST.testImages) - 33.7912) < 1e-3)
    }

    @Test func missingFolderNamed() {
        let message = errorMessage { _ = try MNIST.load(from: URL(fileURLWithPath: "/nonexistent/mnist")) }
        #expect(message?.hasPrefix("/nonexistent/mnist: folder not found") == true, "\(message ?? "no error")")
    }

    @Test func missingFileNamed() throws {
        let folder = try temporaryFolder()
        for name in MNIST.fileNames.dropLast() {
            try FileManager.default.copyItem(
                at: repositoryMNIST.appendingPathComponent(name + ".gz"), to: folder.appendingPathComponent(name + ".gz"))
        }
        let message = errorMessage { _ = try MNIST.load(from: folder) }
        #expect(message?.contains("t10k-labels-idx1-ubyte.gz: file not found") == true, "\(message ?? "no error")")
    }
}

@Suite struct IDXReaderTests {
    @Test func readsPlainFile() throws {
        let url = try write(idxHeader(magic: 0x0801, dimensions: [3]) + [7, 8, 9])
        let array = try IDXReader.read(url, expectedDimensionCount: 1)
        #expect(array.dimensions == [3])
        #expect(array.bytes == [7, 8, 9])
    }

    @Test func wrongMagicRejected() throws {
        let url = try write(idxHeader(magic: 0x0803, dimensions: [1, 1, 1]) + [0])
        let message = errorMessage { _ = try IDXReader.read(url, expectedDimensionCount: 1) }
        #expect(message?.contains("magic number 2051 (0x803) is not 2049 (0x801)") == true, "\(message ?? "no error")")
    }

    @Test func truncatedDataRejected() throws {
        let url = try write(idxHeader(magic: 0x0803, dimensions: [2, 2, 2]) + [1, 2, 3])
        let message = errorMessage { _ = try IDXReader.read(url, expectedDimensionCount: 3) }
        #expect(message?.contains("truncated: dimensions [2, 2, 2] need 8 data bytes, but the file has 3") == true, "\(message ?? "no error")")
    }

    @Test func truncatedHeaderRejected() throws {
        let url = try write([0, 0, 8, 3, 0, 0])
        let message = errorMessage { _ = try IDXReader.read(url, expectedDimensionCount: 3) }
        #expect(message?.contains("shorter than the 16-byte IDX header") == true, "\(message ?? "no error")")
    }

    @Test func trailingDataRejected() throws {
        let url = try write(idxHeader(magic: 0x0801, dimensions: [1]) + [1, 2])
        let message = errorMessage { _ = try IDXReader.read(url, expectedDimensionCount: 1) }
        #expect(message?.contains("has trailing data") == true, "\(message ?? "no error")")
    }

    @Test func truncatedGzipRejected() throws {
        let original = try Data(contentsOf: repositoryMNIST.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
        let url = try write(Array(original.prefix(original.count / 2)), name: "t10k-labels-idx1-ubyte.gz")
        let message = errorMessage { _ = try IDXReader.read(url, expectedDimensionCount: 1) }
        #expect(message?.contains("t10k-labels-idx1-ubyte.gz: truncated") == true, "\(message ?? "no error")")
    }

    @Test func corruptGzipRejected() throws {
        var bytes = Array(try Data(contentsOf: repositoryMNIST.appendingPathComponent("t10k-labels-idx1-ubyte.gz")))
        for index in stride(from: 100, to: 400, by: 7) { bytes[index] ^= 0x5A }
        let url = try write(bytes, name: "t10k-labels-idx1-ubyte.gz")
        let message = errorMessage { _ = try IDXReader.read(url, expectedDimensionCount: 1) }
        #expect(message != nil, "a corrupted gzip stream was accepted")
        #expect(message?.contains("t10k-labels-idx1-ubyte.gz") == true, "\(message ?? "no error")")
    }

    private func idxHeader(magic: Int, dimensions: [Int]) -> [UInt8] {
        func bigEndian(_ value: Int) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * (3 - $0))) & 0xFF) } }
        return bigEndian(magic) + dimensions.flatMap(bigEndian)
    }

    private func write(_ bytes: [UInt8], name: String = "data-idx") throws -> URL {
        let url = try temporaryFolder().appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }
}

/// Creates a new empty folder under the system's temporary directory and returns its URL.
func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("neuralkit-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
