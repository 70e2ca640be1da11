import CCairo
import Foundation

/// Returns cairo's text for a status code, e.g. "error while reading from input stream".
func cairoStatusMessage(_ status: cairo_status_t) -> String {
    String(cString: cairo_status_to_string(status))
}

/// Collects the bytes that `cairo_surface_write_to_png_stream` hands to its callback.
private final class PNGByteSink {
    var bytes: [UInt8] = []
}

/// Encodes an image surface as PNG in memory, so that the caller can write the file atomically.
///
/// - Throws: `NeuralKitError.invalidData` naming `path` when cairo fails to encode.
func encodePNG(_ surface: OpaquePointer, path: String) throws -> [UInt8] {
    let sink = PNGByteSink()
    let context = Unmanaged.passUnretained(sink).toOpaque()
    let status = withExtendedLifetime(sink) {
        cairo_surface_write_to_png_stream(
            surface,
            { closure, data, length in
                guard let closure, let data else { return CAIRO_STATUS_WRITE_ERROR }
                let sink = Unmanaged<PNGByteSink>.fromOpaque(closure).takeUnretainedValue()
                sink.bytes.append(contentsOf: UnsafeBufferPointer(start: data, count: Int(length)))
                return CAIRO_STATUS_SUCCESS
            },
            context)
    }
    guard status == CAIRO_STATUS_SUCCESS else {
        throw NeuralKitError.invalidData(file: path, reason: "PNG encoding failed: \(cairoStatusMessage(status))")
    }
    return sink.bytes
}

/// Checks that a file can be created at `url`: its folder exists and is writable, and
/// `url` is not a folder. Call it before long work whose result goes to `url`.
///
/// - Throws: `NeuralKitError.invalidData` naming `url`, the problem and the fix.
public func checkOutputFile(_ url: URL) throws {
    let path = url.path
    let folder = url.deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw NeuralKitError.invalidData(file: path, reason: "is a folder; give a file name inside it, such as \(path)/history.png")
    }
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else {
        throw NeuralKitError.invalidData(
            file: path, reason: "cannot be written because the folder \(folder) does not exist; create it first (mkdir -p \(folder))")
    }
    guard isDirectory.boolValue else {
        throw NeuralKitError.invalidData(file: path, reason: "cannot be written because \(folder) is a file, not a folder; choose another path")
    }
    guard access(folder, W_OK) == 0 else {
        throw NeuralKitError.invalidData(
            file: path,
            reason: "cannot be written because the folder \(folder) is not writable (\(String(cString: strerror(errno)))); "
                + "choose a writable folder or change its permissions")
    }
}

/// Writes a surface as a PNG file, replacing any file at `url` atomically.
///
/// - Throws: `NeuralKitError.invalidData` naming `url`, the problem and the fix.
func writePNG(_ surface: OpaquePointer, to url: URL) throws {
    try checkOutputFile(url)
    let bytes = try encodePNG(surface, path: url.path)
    do {
        try AtomicFileWriter.replaceFile(at: url, with: bytes)
    } catch NeuralKitError.invalidData(let file, let reason) {
        throw NeuralKitError.invalidData(
            file: file, reason: "\(reason); check that the folder is writable and has free space, or choose another path")
    }
}
