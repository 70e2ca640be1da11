import CZlib
import Foundation

/// The contents of an IDX file (the format of MNIST): unsigned-byte data and its dimensions.
public struct IDXArray: Sendable {
    /// The dimensions from the header, outermost first, e.g. `[60000, 28, 28]`.
    public var dimensions: [Int]
    /// The data in row-major order; `bytes.count` is the product of `dimensions`.
    public var bytes: [UInt8]
}

/// Reads IDX files of unsigned bytes, gzip-compressed (`.gz`) or not.
///
/// The header is two zero bytes, the type code `0x08` (unsigned byte), the number of
/// dimensions, then each dimension as a big-endian 32-bit integer. The data must fill
/// exactly the product of the dimensions.
public enum IDXReader {
    /// Reads and checks an IDX file.
    ///
    /// - Parameter expectedDimensionCount: the number of dimensions the file must have
    ///   (3 for images, 1 for labels), so the magic number must be `0x0800 + count`.
    /// - Throws: `NeuralKitError.invalidData` naming the file when it is missing,
    ///   corrupt, truncated, has trailing bytes, or has another magic number.
    public static func read(_ url: URL, expectedDimensionCount: Int) throws -> IDXArray {
        let path = url.path
        guard FileManager.default.fileExists(atPath: path) else {
            throw NeuralKitError.invalidData(file: path, reason: "file not found")
        }
        let content = try decompress(path)

        guard content.count >= 4 else {
            throw NeuralKitError.invalidData(file: path, reason: "truncated: \(content.count) bytes is shorter than the 4-byte IDX magic number")
        }
        let magic = content[0..<4].reduce(0) { $0 << 8 | Int($1) }
        let expectedMagic = 0x0800 + expectedDimensionCount
        guard magic == expectedMagic else {
            throw NeuralKitError.invalidData(
                file: path,
                reason: "magic number \(magic) (0x\(String(magic, radix: 16))) is not \(expectedMagic) (0x\(String(expectedMagic, radix: 16))), "
                    + "the IDX header of unsigned bytes in \(expectedDimensionCount) dimension(s); check that this is the right file")
        }

        let headerSize = 4 + 4 * expectedDimensionCount
        guard content.count >= headerSize else {
            throw NeuralKitError.invalidData(
                file: path, reason: "truncated: \(content.count) bytes is shorter than the \(headerSize)-byte IDX header")
        }
        var dimensions: [Int] = []
        for axis in 0..<expectedDimensionCount {
            let offset = 4 + 4 * axis
            dimensions.append(content[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) })
        }
        let expectedCount = dimensions.reduce(1, *)
        let dataCount = content.count - headerSize
        guard dataCount == expectedCount else {
            let problem = dataCount < expectedCount ? "truncated" : "has trailing data"
            throw NeuralKitError.invalidData(
                file: path,
                reason: "\(problem): dimensions \(dimensions) need \(expectedCount) data bytes, but the file has \(dataCount)")
        }
        return IDXArray(dimensions: dimensions, bytes: Array(content[headerSize...]))
    }

    /// Reads the whole file through zlib, which passes uncompressed files through unchanged.
    private static func decompress(_ path: String) throws -> [UInt8] {
        guard let file = gzopen(path, "rb") else {
            throw NeuralKitError.invalidData(file: path, reason: "cannot be opened: \(String(cString: strerror(errno)))")
        }
        defer { gzclose(file) }

        var content = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let read = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            var status: Int32 = 0
            let message = String(cString: gzerror(file, &status))
            if read < 0 || (status != Z_OK && status != Z_STREAM_END) {
                let reason = status == Z_BUF_ERROR ? "truncated: the gzip stream ends early" : "corrupt gzip data (\(message))"
                throw NeuralKitError.invalidData(file: path, reason: reason)
            }
            if read == 0 { break }
            content.append(contentsOf: chunk[0..<Int(read)])
        }
        return content
    }
}
