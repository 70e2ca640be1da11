import Foundation

/// Writes one CSV row per epoch, as Keras' `CSVLogger`.
///
/// The header is `epoch` followed by the first epoch's log keys in sorted order, such as
/// `epoch,accuracy,loss,val_accuracy,val_loss`. Each row contains the 0-based epoch and
/// the values, in the shortest form that reads back as the same Float (`0.2980351`).
/// A key missing from a later epoch's logs is written as `NA`. Fields that contain the
/// separator, a quote or a line break are quoted. Rows end in `\n`, where Python's csv
/// module, which Keras uses, writes `\r\n`.
///
/// Each row is written with one `write` call and flushed to disk (`fsync`) at the end
/// of its epoch, so a crash keeps the rows of the finished epochs.
public final class CSVLogger: Callback {
    public let filename: URL
    public let separator: String
    /// Whether to add rows to an existing file instead of replacing it, for continuing
    /// training with `initialEpoch`. The header is written only when the file is
    /// missing or its first line is empty.
    public let append: Bool

    private var handle: FileHandle?
    private var keys: [String]?
    private var writesHeader = true
    private var existingHeader: String?

    /// - Throws: `NeuralKitError.invalidArgument` for an empty separator or one that
    ///   contains a quote or a line break.
    public init(filename: URL, separator: String = ",", append: Bool = false) throws {
        guard !separator.isEmpty, !separator.contains("\""), !separator.contains(where: \.isNewline) else {
            throw NeuralKitError.invalidArgument(
                "CSVLogger separator must be non-empty and contain no quote or line break, got \(separator.debugDescription)")
        }
        self.filename = filename
        self.separator = separator
        self.append = append
    }

    deinit {
        try? handle?.close()
    }

    /// Opens the file, or throws `NeuralKitError.invalidData` naming it when that fails.
    public func trainBegin() throws {
        try? handle?.close()
        handle = nil
        keys = nil
        writesHeader = true
        existingHeader = nil

        let path = filename.path
        let manager = FileManager.default
        if append, manager.fileExists(atPath: path) {
            let firstLine = try readFirstLine()
            writesHeader = firstLine.isEmpty
            existingHeader = firstLine.isEmpty ? nil : firstLine
        } else {
            guard manager.createFile(atPath: path, contents: nil) else {
                throw NeuralKitError.invalidData(
                    file: path, reason: "cannot create the CSVLogger file; check that its folder exists and is writable")
            }
        }
        do {
            let handle = try FileHandle(forWritingTo: filename)
            try handle.seekToEnd()
            self.handle = handle
        } catch {
            throw NeuralKitError.invalidData(file: path, reason: "cannot open the CSVLogger file for writing: \(error.localizedDescription)")
        }
    }

    public func epochEnd(_ epoch: Int, logs: [String: Float]) throws {
        guard let handle else { return }
        var text = ""
        if keys == nil {
            let sortedKeys = logs.keys.sorted()
            keys = sortedKeys
            let header = (["epoch"] + sortedKeys).map(quoted).joined(separator: separator)
            if writesHeader {
                text += header + "\n"
            } else if let existingHeader, existingHeader != header {
                printWarning(
                    "CSVLogger is appending to \(filename.path), whose header '\(existingHeader)' differs from this run's "
                        + "columns '\(header)'; the new rows follow this run's columns")
            }
        }
        let values = (keys ?? []).map { key in logs[key].map { "\($0)" } ?? "NA" }
        text += (["\(epoch)"] + values).map(quoted).joined(separator: separator) + "\n"
        do {
            try handle.write(contentsOf: Data(text.utf8))
            try handle.synchronize()
        } catch {
            throw NeuralKitError.invalidData(
                file: filename.path, reason: "writing the CSVLogger row of epoch \(epoch) failed: \(error.localizedDescription)")
        }
    }

    public func trainEnd(logs: [String: Float]) throws {
        try? handle?.close()
        handle = nil
    }

    private func quoted(_ field: String) -> String {
        guard field.contains(separator) || field.contains("\"") || field.contains(where: \.isNewline) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Returns the file's first line without its line break.
    private func readFirstLine() throws -> String {
        let data: Data
        do {
            let reader = try FileHandle(forReadingFrom: filename)
            defer { try? reader.close() }
            data = try reader.read(upToCount: 65_536) ?? Data()
        } catch {
            throw NeuralKitError.invalidData(file: filename.path, reason: "cannot read the CSVLogger file to append to it: \(error.localizedDescription)")
        }
        let text = String(decoding: data, as: UTF8.self)
        let line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
    }
}
