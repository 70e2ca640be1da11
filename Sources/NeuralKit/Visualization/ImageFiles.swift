import CCairo
import CZlib
import Foundation

/// The file formats `readGrayscaleImages(from:)` accepts.
public enum ImageFileFormat: String, Sendable {
    /// A PNG image of any colour type and bit depth: one image.
    case png
    /// An IDX file of unsigned bytes, gzip-compressed or not: one `(height, width)` image,
    /// or a stack of `(count, height, width)` or `(count, height, width, 1)` images.
    case idx
}

/// The images read from one file.
public struct ImageFile: Sendable {
    public var url: URL
    public var format: ImageFileFormat
    /// One image for a PNG file, or one per entry of the first axis for an IDX stack.
    public var images: [GrayscaleImage]
}

private let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

/// Reads a PNG image or an IDX file of images as grayscale images with values in [0, 1].
///
/// PNG pixels are composited over white, so transparent areas count as white, and colour
/// is converted to gray with the ITU-R BT.601 luma weights (0.299 R + 0.587 G + 0.114 B),
/// as Pillow's `convert("L")`. IDX bytes are divided by 255, as `MNIST.load` does.
///
/// - Throws: `NeuralKitError.invalidData` naming the file when it is missing, unreadable,
///   neither PNG nor IDX, a corrupt PNG, or an IDX file whose data are not 2-D images.
public func readGrayscaleImages(from url: URL) throws -> ImageFile {
    let path = url.path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw NeuralKitError.invalidData(file: path, reason: "file not found")
    }
    guard !isDirectory.boolValue else {
        throw NeuralKitError.invalidData(file: path, reason: "is a folder; pass a PNG image or an IDX file of images")
    }

    let leading = try readLeadingBytes(path, count: 24)
    guard !leading.isEmpty else {
        throw NeuralKitError.invalidData(file: path, reason: "is empty; pass a PNG image or an IDX file of images")
    }
    if leading.starts(with: pngSignature) {
        try checkPNGSize(leading, path: path)
        return ImageFile(url: url, format: .png, images: [try readPNG(path)])
    }
    let isGzip = leading.starts(with: [0x1F, 0x8B])
    let isIDX = leading.count >= 4 && leading[0] == 0 && leading[1] == 0
    if isGzip || isIDX {
        return ImageFile(url: url, format: .idx, images: try readIDXImages(url))
    }
    let leadingHex = leading.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
    throw NeuralKitError.invalidData(
        file: path,
        reason: "is not a PNG image or an IDX file (it starts with bytes \(leadingHex)); convert other image formats such as JPEG to PNG")
}

/// The largest PNG that `readGrayscaleImages` decodes, in pixels: cairo decodes to 4
/// bytes a pixel, so the limit caps that buffer at 160 MB.
let maximumPNGPixels = 40_000_000

/// Throws unless the PNG header (the IHDR chunk in bytes 16 to 23) gives a width and
/// height of at least 1 and at most `maximumPNGPixels` pixels in all.
private func checkPNGSize(_ leading: [UInt8], path: String) throws {
    guard leading.count >= 24 else {
        throw NeuralKitError.invalidData(file: path, reason: "is not a valid PNG image: it is truncated, and its header ends after \(leading.count) bytes")
    }
    let width = leading[16..<20].reduce(0) { $0 << 8 | Int($1) }
    let height = leading[20..<24].reduce(0) { $0 << 8 | Int($1) }
    guard width > 0, height > 0 else {
        throw NeuralKitError.invalidData(file: path, reason: "is not a valid PNG image: its header gives a size of \(width)x\(height) pixels")
    }
    guard width * height <= maximumPNGPixels else {
        throw NeuralKitError.invalidData(
            file: path,
            reason: "is \(width)x\(height) pixels, more than the limit of \(maximumPNGPixels) pixels; scale it down first, "
                + "since it is resized to the model's input size anyway")
    }
}

/// Up to `count` bytes from the start of a file, as stored (not decompressed).
private func readLeadingBytes(_ path: String, count: Int) throws -> [UInt8] {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
        throw NeuralKitError.invalidData(file: path, reason: "cannot be read: \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    var bytes = [UInt8](repeating: 0, count: count)
    let byteCount = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, count) }
    guard byteCount >= 0 else {
        throw NeuralKitError.invalidData(file: path, reason: "cannot be read: \(String(cString: strerror(errno)))")
    }
    return Array(bytes[0..<byteCount])
}

/// Decodes a PNG file with cairo (which uses libpng) and converts it to gray.
private func readPNG(_ path: String) throws -> GrayscaleImage {
    let decoded = cairo_image_surface_create_from_png(path)!
    defer { cairo_surface_destroy(decoded) }
    let status = cairo_surface_status(decoded)
    guard status == CAIRO_STATUS_SUCCESS else {
        // cairo reports corrupt or truncated image data as "out of memory" or a read error.
        throw NeuralKitError.invalidData(
            file: path, reason: "is not a valid PNG image: its data are corrupt or truncated (cairo: \(cairoStatusMessage(status)))")
    }
    let width = Int(cairo_image_surface_get_width(decoded))
    let height = Int(cairo_image_surface_get_height(decoded))

    // Cairo decodes to premultiplied ARGB or to RGB; painting onto a white RGB surface
    // removes the alpha channel, so one pixel layout remains.
    let flattened = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32(width), Int32(height))!
    defer { cairo_surface_destroy(flattened) }
    let context = cairo_create(flattened)!
    cairo_set_source_rgb(context, 1, 1, 1)
    cairo_paint(context)
    cairo_set_source_surface(context, decoded, 0, 0)
    cairo_paint(context)
    let drawStatus = cairo_status(context)
    cairo_destroy(context)
    cairo_surface_flush(flattened)
    guard drawStatus == CAIRO_STATUS_SUCCESS, let data = cairo_image_surface_get_data(flattened) else {
        throw NeuralKitError.invalidData(
            file: path, reason: "cannot be converted to gray (\(width)x\(height) pixels): \(cairoStatusMessage(drawStatus))")
    }

    let stride = Int(cairo_image_surface_get_stride(flattened))
    var pixels = [Float](repeating: 0, count: width * height)
    for y in 0..<height {
        let row = UnsafeRawPointer(data + y * stride)
        for x in 0..<width {
            // An RGB24 pixel is a native-endian 32-bit word 0x00RRGGBB.
            // Integer weights in thousandths keep gray input exact: r = g = b gives r / 255.
            let word = row.load(fromByteOffset: 4 * x, as: UInt32.self)
            let red = (word >> 16) & 0xFF
            let green = (word >> 8) & 0xFF
            let blue = word & 0xFF
            pixels[y * width + x] = Float(299 * red + 587 * green + 114 * blue) / 255_000
        }
    }
    return GrayscaleImage(width: width, height: height, pixels: pixels)
}

/// Reads an IDX file of unsigned bytes that contains one image or a stack of images.
private func readIDXImages(_ url: URL) throws -> [GrayscaleImage] {
    let path = url.path
    let header = try readIDXHeader(path)
    let shape = formatShape(header.dimensions)
    let dimensionCount = header.dimensions.count
    guard header.typeCode == 0x08 else {
        throw NeuralKitError.invalidData(
            file: path,
            reason: "has IDX type code 0x\(String(format: "%02x", header.typeCode)); only unsigned bytes (0x08) are supported, as in MNIST")
    }
    switch dimensionCount {
    case 2, 3:
        break
    case 4 where header.dimensions[3] == 1:
        break
    case 4:
        throw NeuralKitError.invalidData(
            file: path, reason: "contains images of shape \(shape) with \(header.dimensions[3]) channels; only 1-channel (grayscale) images are supported")
    default:
        throw NeuralKitError.invalidData(
            file: path,
            reason: "contains \(dimensionCount)-D data of shape \(shape), not 2-D images; pass an image file with shape "
                + "(height, width) or (count, height, width), such as t10k-images-idx3-ubyte.gz, not a labels file")
    }

    let array = try IDXReader.read(url, expectedDimensionCount: dimensionCount)
    let dimensions = array.dimensions
    let (count, height, width) = dimensionCount == 2 ? (1, dimensions[0], dimensions[1]) : (dimensions[0], dimensions[1], dimensions[2])
    guard count > 0, height > 0, width > 0 else {
        throw NeuralKitError.invalidData(file: path, reason: "contains no images: its shape is \(formatShape(dimensions))")
    }
    let pixelCount = height * width
    let scale: Float = 1 / 255
    return (0..<count).map { index in
        let bytes = array.bytes[(index * pixelCount)..<((index + 1) * pixelCount)]
        return GrayscaleImage(width: width, height: height, pixels: bytes.map { Float($0) * scale })
    }
}

/// Reads the type code and dimensions of an IDX header, but not the data, through zlib
/// so that gzip-compressed and plain files both work.
private func readIDXHeader(_ path: String) throws -> (typeCode: UInt8, dimensions: [Int]) {
    guard let file = gzopen(path, "rb") else {
        throw NeuralKitError.invalidData(file: path, reason: "cannot be opened: \(String(cString: strerror(errno)))")
    }
    defer { gzclose(file) }
    func readBytes(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32(count)) }
        guard read == Int32(count) else {
            throw NeuralKitError.invalidData(
                file: path, reason: "is not a valid IDX file: the header is truncated or the gzip data are corrupt")
        }
        return bytes
    }

    let magic = try readBytes(4)
    guard magic[0] == 0, magic[1] == 0 else {
        throw NeuralKitError.invalidData(
            file: path, reason: "is not an IDX file: it does not start with two zero bytes (after gzip decompression)")
    }
    var dimensions: [Int] = []
    for _ in 0..<Int(magic[3]) {
        dimensions.append(try readBytes(4).reduce(0) { $0 << 8 | Int($1) })
    }
    return (magic[2], dimensions)
}
