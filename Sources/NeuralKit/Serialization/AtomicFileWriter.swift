import Foundation

/// Replaces a file's contents so that readers and crashes see either the old file or
/// the complete new one.
///
/// The bytes go to a temporary file in the target's folder (`.<name>.<random>.tmp`),
/// which gets the old file's permission bits, is flushed with `fsync`, and is renamed
/// over the target. POSIX `rename` within one file system replaces the target
/// atomically. A failure removes the temporary file. A process killed mid-write can
/// leave the temporary file behind, but the target stays intact.
enum AtomicFileWriter {
    /// Writes `bytes` to a file at `url`, replacing any file there.
    ///
    /// A symbolic link at `url` is followed, so the file it points to is replaced and
    /// the link is kept.
    ///
    /// - Throws: `NeuralKitError.invalidData` naming `url` and the failed step.
    static func replaceFile(at url: URL, with bytes: [UInt8]) throws {
        let displayPath = url.path
        let target = url.resolvingSymlinksInPath()
        let folder = target.deletingLastPathComponent()
        let temporaryPath = folder.appendingPathComponent(
            ".\(target.lastPathComponent).\(String(UInt64.random(in: 0...UInt64.max), radix: 16)).tmp"
        ).path

        // Callers pass `errno` first: Swift evaluates arguments left to right, so it is
        // read before building the step's message can change it.
        func failure(_ code: Int32, _ step: String) -> NeuralKitError {
            let reason = String(cString: strerror(code))
            return NeuralKitError.invalidData(file: displayPath, reason: "cannot be saved: \(step) failed: \(reason)")
        }

        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard descriptor >= 0 else {
            throw failure(errno, "creating the temporary file \(temporaryPath)")
        }
        var isOpen = true
        var renamed = false
        defer {
            if isOpen { close(descriptor) }
            if !renamed { unlink(temporaryPath) }
        }

        var existing = stat()
        if stat(target.path, &existing) == 0 {
            guard fchmod(descriptor, existing.st_mode & 0o7777) == 0 else {
                throw failure(errno, "copying the permissions of the existing file to \(temporaryPath)")
            }
        }

        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw failure(errno, "writing \(bytes.count) bytes to \(temporaryPath)")
            }
            written += result
        }
        guard fsync(descriptor) == 0 else { throw failure(errno, "flushing \(temporaryPath) to disk (fsync)") }
        isOpen = false
        guard close(descriptor) == 0 else { throw failure(errno, "closing \(temporaryPath)") }

        guard rename(temporaryPath, target.path) == 0 else {
            throw failure(errno, "renaming \(temporaryPath) to \(target.path)")
        }
        renamed = true

        // Flush the folder so that the rename itself survives a power loss. Some file
        // systems reject fsync on folders, and the new file is complete either way.
        let folderDescriptor = open(folder.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folderDescriptor >= 0 {
            _ = fsync(folderDescriptor)
            close(folderDescriptor)
        }
    }
}
