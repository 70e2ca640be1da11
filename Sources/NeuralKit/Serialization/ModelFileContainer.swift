import CZlib
import Foundation

/// The binary container of model and weights files: a 32-byte fixed header, a JSON
/// header, little-endian float32 tensor data and a CRC-32 trailer.
///
/// | Offset      | Size | Field                                                    |
/// |-------------|------|----------------------------------------------------------|
/// | 0           | 8    | magic `89 4E 4B 4D 0D 0A 1A 0A`                          |
/// | 8           | 4    | format version, UInt32                                   |
/// | 12          | 4    | flags, UInt32 (bit 0: weights only)                      |
/// | 16          | 8    | JSON header length `H`, UInt64                           |
/// | 24          | 8    | tensor data length `D`, UInt64                           |
/// | 32          | H    | JSON header, UTF-8                                       |
/// | 32 + H      | D    | tensor data, float32                                     |
/// | 32 + H + D  | 4    | CRC-32 of bytes `0 ..< 32 + H + D`, UInt32               |
///
/// All integers are little-endian. docs/model-format.md describes the JSON header.
enum ModelFileContainer {
    /// The first 8 bytes of every file. As in PNG's signature, the non-ASCII first byte
    /// and the CR LF, EOF and LF bytes show when a transfer altered the file as text.
    static let magic: [UInt8] = [0x89, 0x4E, 0x4B, 0x4D, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The newest format version this library writes and reads.
    static let formatVersion: UInt32 = 1

    static let fixedHeaderSize = 32
    static let checksumSize = 4

    /// Assembles a complete file from its flags, JSON header and tensor data.
    ///
    /// The JSON header is padded with spaces to a multiple of 8 bytes, so that the
    /// tensor data starts 8-byte aligned.
    static func assemble(flags: ModelFileFlags, header: [UInt8], tensorData: [UInt8]) -> [UInt8] {
        var paddedHeader = header
        while paddedHeader.count % 8 != 0 { paddedHeader.append(UInt8(ascii: " ")) }

        var bytes = [UInt8]()
        bytes.reserveCapacity(fixedHeaderSize + paddedHeader.count + tensorData.count + checksumSize)
        bytes.append(contentsOf: magic)
        appendLittleEndian(formatVersion, to: &bytes)
        appendLittleEndian(flags.rawValue, to: &bytes)
        appendLittleEndian(UInt64(paddedHeader.count), to: &bytes)
        appendLittleEndian(UInt64(tensorData.count), to: &bytes)
        bytes.append(contentsOf: paddedHeader)
        bytes.append(contentsOf: tensorData)
        appendLittleEndian(crc32(of: bytes[...]), to: &bytes)
        return bytes
    }

    /// Checks the magic, version, flags, lengths and checksum of a file, in that order,
    /// and returns its flags, JSON header and tensor data. A version newer than this
    /// library's also reports whether the trailer is a valid CRC-32, which distinguishes a
    /// corrupt version field from a file of a newer format.
    ///
    /// - Throws: `NeuralKitError.invalidData` naming `path` and the first check that failed.
    static func parse(_ bytes: [UInt8], path: String) throws -> (flags: ModelFileFlags, header: ArraySlice<UInt8>, tensorData: ArraySlice<UInt8>) {
        func invalid(_ reason: String) -> NeuralKitError {
            NeuralKitError.invalidData(file: path, reason: reason)
        }

        let prefix = Array(bytes.prefix(magic.count))
        guard prefix == Array(magic.prefix(prefix.count)) else {
            throw invalid(
                "wrong magic bytes \(hexString(prefix)), expected \(hexString(magic)); this is not a NeuralKit model or weights file")
        }
        let minimumSize = fixedHeaderSize + checksumSize
        guard bytes.count >= minimumSize else {
            throw invalid("truncated: \(bytes.count) bytes is shorter than the \(minimumSize)-byte minimum of a NeuralKit model file")
        }

        let version = readLittleEndian(UInt32.self, bytes, at: 8)
        guard version != 0 else { throw invalid("invalid format version 0; no NeuralKit writes it, so the file is corrupt. Save the model again or use another copy") }
        guard version <= formatVersion else {
            // A newer format may lay out its file differently, but a bit flip in the version
            // of a file of this format leaves a CRC-32 trailer that no longer matches.
            let trailer = trailerChecksums(of: bytes)
            let trailerMatches = trailer.stored == trailer.computed
            throw invalid(
                "format version \(version) is newer than version \(formatVersion), the newest this NeuralKit reads; "
                    + "load the file with a newer NeuralKit"
                    + (trailerMatches ? "" : ". Its last 4 bytes are not the CRC-32 of the rest, so the file may instead be corrupt"))
        }

        let rawFlags = readLittleEndian(UInt32.self, bytes, at: 12)
        let unknownFlags = rawFlags & ~ModelFileFlags.known.rawValue
        guard unknownFlags == 0 else {
            throw invalid("unknown flags 0x\(String(unknownFlags, radix: 16)) for format version \(version)")
        }

        let headerLength = readLittleEndian(UInt64.self, bytes, at: 16)
        let dataLength = readLittleEndian(UInt64.self, bytes, at: 24)
        // Add in UInt64 with overflow checks, so that corrupt lengths cannot trap.
        let (lengthsSum, lengthsOverflow) = headerLength.addingReportingOverflow(dataLength)
        let (declaredSize, sizeOverflow) = lengthsSum.addingReportingOverflow(UInt64(minimumSize))
        guard !lengthsOverflow, !sizeOverflow else {
            throw invalid(
                "invalid lengths in the fixed header: a \(headerLength)-byte JSON header and \(dataLength) bytes of tensor data "
                    + "exceed the maximum file size")
        }
        let actualSize = UInt64(bytes.count)
        guard declaredSize <= actualSize else {
            throw invalid(
                "truncated: the fixed header declares a \(headerLength)-byte JSON header and \(dataLength) bytes of tensor data, "
                    + "\(declaredSize) bytes in all, but the file has \(bytes.count) bytes")
        }
        guard declaredSize == actualSize else {
            throw invalid(
                "\(actualSize - declaredSize) unexpected bytes after the checksum; the fixed header declares \(declaredSize) bytes in all")
        }

        let checksumOffset = bytes.count - checksumSize
        let (storedChecksum, computedChecksum) = trailerChecksums(of: bytes)
        guard storedChecksum == computedChecksum else {
            throw invalid(
                "checksum mismatch: the file stores CRC-32 \(hex32(storedChecksum)), but its contents give \(hex32(computedChecksum)); "
                    + "the file is corrupt")
        }

        let headerStart = fixedHeaderSize
        let dataStart = headerStart + Int(headerLength)
        return (
            ModelFileFlags(rawValue: rawFlags),
            bytes[headerStart..<dataStart],
            bytes[dataStart..<checksumOffset]
        )
    }

    /// Returns the CRC-32 stored in the last 4 bytes of `bytes` and the CRC-32 of the
    /// bytes before it.
    private static func trailerChecksums(of bytes: [UInt8]) -> (stored: UInt32, computed: UInt32) {
        let checksumOffset = bytes.count - checksumSize
        return (readLittleEndian(UInt32.self, bytes, at: checksumOffset), crc32(of: bytes[..<checksumOffset]))
    }

    /// Computes zlib's CRC-32, the ISO-HDLC checksum that gzip and PNG also use.
    static func crc32(of bytes: ArraySlice<UInt8>) -> UInt32 {
        var checksum = CZlib.crc32(0, nil, 0)
        bytes.withUnsafeBufferPointer { buffer in
            var offset = 0
            // zlib takes a 32-bit length, so feed at most 1 GiB at a time.
            while offset < buffer.count {
                let chunk = min(buffer.count - offset, 1 << 30)
                checksum = CZlib.crc32(checksum, buffer.baseAddress! + offset, uInt(chunk))
                offset += chunk
            }
        }
        return UInt32(truncatingIfNeeded: checksum)
    }

    private static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    private static func readLittleEndian<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        var value = T.zero
        for index in stride(from: MemoryLayout<T>.size - 1, through: 0, by: -1) {
            value = value << 8 | T(bytes[offset + index])
        }
        return value
    }

    private static func hexString(_ bytes: [UInt8]) -> String {
        bytes.isEmpty ? "(none, the file is empty)" : bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
    }

    private static func hex32(_ value: UInt32) -> String {
        "0x" + String(format: "%08X", value)
    }
}

/// The flags field of a model file.
struct ModelFileFlags: OptionSet {
    let rawValue: UInt32

    /// The file contains weights only, as written by `saveWeights(to:)`: no optimizer
    /// state, generator state or compile configuration.
    static let weightsOnly = ModelFileFlags(rawValue: 1 << 0)

    /// Every flag that format version 1 defines. Readers reject files with other bits set.
    static let known: ModelFileFlags = [.weightsOnly]
}

/// Tensors collected for the data section, with the table that the JSON header stores.
struct TensorDataWriter {
    private(set) var records: [TensorRecord] = []
    private(set) var data: [UInt8] = []

    /// Appends a tensor's scalars as little-endian float32 and returns its index in `records`.
    mutating func append(name: String, _ tensor: Tensor<Float>) -> Int {
        records.append(
            TensorRecord(name: name, dtype: TensorRecord.float32, shape: tensor.shape, offset: data.count, byteCount: tensor.count * 4))
        #if _endian(little)
            tensor.scalars.withUnsafeBytes { data.append(contentsOf: $0) }
        #else
            for scalar in tensor.scalars {
                withUnsafeBytes(of: scalar.bitPattern.littleEndian) { data.append(contentsOf: $0) }
            }
        #endif
        return records.count - 1
    }
}
