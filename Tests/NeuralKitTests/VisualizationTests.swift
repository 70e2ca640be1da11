import CCairo
import Foundation
import NeuralKit
import Testing

/// The pixels of a PNG file decoded by cairo, as 0xAARRGGBB words, row by row.
struct DecodedPNG {
    var width: Int
    var height: Int
    var pixels: [UInt32]

    subscript(x: Int, y: Int) -> UInt32 { pixels[y * width + x] }
}

/// Decodes a PNG with cairo, or returns nil when cairo reports an error.
func decodePNG(_ url: URL) -> DecodedPNG? {
    let surface = cairo_image_surface_create_from_png(url.path)!
    defer { cairo_surface_destroy(surface) }
    guard cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS, let data = cairo_image_surface_get_data(surface) else {
        return nil
    }
    let width = Int(cairo_image_surface_get_width(surface))
    let height = Int(cairo_image_surface_get_height(surface))
    let stride = Int(cairo_image_surface_get_stride(surface))
    var pixels: [UInt32] = []
    for y in 0..<height {
        let row = UnsafeRawPointer(data + y * stride)
        for x in 0..<width { pixels.append(row.load(fromByteOffset: 4 * x, as: UInt32.self) & 0x00FF_FFFF) }
    }
    return DecodedPNG(width: width, height: height, pixels: pixels)
}

/// Draws a filled disc of radius `size / 4` in the centre of a `size` by `size` image and
/// writes it as PNG: white on black when `lightOnDark`, else black on white. `format`
/// picks the PNG colour type cairo writes: RGB24 gives RGB, ARGB32 gives RGBA and A8 gives gray.
func writeDiscPNG(to url: URL, size: Int, lightOnDark: Bool, format: cairo_format_t = CAIRO_FORMAT_RGB24) {
    let surface = cairo_image_surface_create(format, Int32(size), Int32(size))!
    let context = cairo_create(surface)!
    let (background, foreground): (Double, Double) = lightOnDark ? (0, 1) : (1, 0)
    if format == CAIRO_FORMAT_A8 {
        // An A8 surface stores only alpha, which cairo writes as the gray value.
        cairo_set_operator(context, CAIRO_OPERATOR_SOURCE)
        cairo_set_source_rgba(context, 0, 0, 0, background)
        cairo_paint(context)
        cairo_set_source_rgba(context, 0, 0, 0, foreground)
    } else {
        cairo_set_source_rgb(context, background, background, background)
        cairo_paint(context)
        cairo_set_source_rgb(context, foreground, foreground, foreground)
    }
    cairo_arc(context, Double(size) / 2, Double(size) / 2, Double(size) / 4, 0, 2 * Double.pi)
    cairo_fill(context)
    cairo_destroy(context)
    cairo_surface_write_to_png(surface, url.path)
    cairo_surface_destroy(surface)
}

/// Writes an uncompressed IDX file of unsigned bytes.
func writeIDX(to url: URL, dimensions: [Int], bytes: [UInt8]) throws {
    var content: [UInt8] = [0, 0, 0x08, UInt8(dimensions.count)]
    for dimension in dimensions {
        content += [UInt8(dimension >> 24 & 0xFF), UInt8(dimension >> 16 & 0xFF), UInt8(dimension >> 8 & 0xFF), UInt8(dimension & 0xFF)]
    }
    try Data(content + bytes).write(to: url)
}

/// Makes a history of `epochs` epochs with training and validation loss and accuracy.
func syntheticHistory(epochs: Int, offset: Float) -> History {
    var history = History()
    history.epoch = Array(0..<epochs)
    history.keys = ["loss", "accuracy", "val_loss", "val_accuracy"]
    let steps = (0..<epochs).map { Float($0) }
    history.history = [
        "loss": steps.map { 2 / ($0 + 1) + offset },
        "accuracy": steps.map { 0.5 + 0.4 * $0 / Float(max(epochs - 1, 1)) - offset },
        "val_loss": steps.map { 2.2 / ($0 + 1) + offset },
        "val_accuracy": steps.map { 0.45 + 0.4 * $0 / Float(max(epochs - 1, 1)) - offset },
    ]
    return history
}

@Suite struct VisualizationTests {
    static let blue: UInt32 = 0x1F77B4
    static let orange: UInt32 = 0xFF7F0E

    @Test func plotHasSizeAndCurvesInBothPanels() throws {
        let url = try temporaryFolder().appendingPathComponent("history.png")
        let runs = [("sparse", syntheticHistory(epochs: 5, offset: 0)), ("categorical", syntheticHistory(epochs: 5, offset: 0.05))]
        try plotTrainingHistory(runs.map { (name: $0.0, history: $0.1) }, to: url, width: 1000, height: 450)

        let image = try #require(decodePNG(url))
        #expect(image.width == 1000)
        #expect(image.height == 450)
        #expect(Set(image.pixels).count >= 4, "the plot has only \(Set(image.pixels).count) distinct colours")

        // Each run's colour appears in both halves, which contain the loss and accuracy panels.
        for (name, color) in [("blue", Self.blue), ("orange", Self.orange)] {
            for (panel, columns) in [("loss", 0..<500), ("accuracy", 500..<1000)] {
                var count = 0
                for y in 0..<image.height { for x in columns where image[x, y] == color { count += 1 } }
                #expect(count > 100, "the \(panel) panel has \(count) \(name) pixels")
            }
        }
    }

    @Test func plotOfSingleEpochIsNotBlank() throws {
        let url = try temporaryFolder().appendingPathComponent("one-epoch.png")
        try plotTrainingHistory([(name: "run", history: syntheticHistory(epochs: 1, offset: 0))], to: url)
        let image = try #require(decodePNG(url))
        #expect(image.width == 1200)
        #expect(image.height == 520)
        #expect(image.pixels.contains(Self.blue))
        #expect(image.pixels.filter { $0 != 0xFFFFFF }.count > 1000)
    }

    @Test func plotReplacesFileWithoutLeftovers() throws {
        let folder = try temporaryFolder()
        let url = folder.appendingPathComponent("history.png")
        try Data("old".utf8).write(to: url)
        try plotTrainingHistory([(name: "run", history: syntheticHistory(epochs: 3, offset: 0))], to: url)
        #expect(decodePNG(url) != nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["history.png"])
    }

    @Test func plotIntoMissingFolderNamesFix() throws {
        let url = try temporaryFolder().appendingPathComponent("missing/history.png")
        let message = errorMessage {
            try plotTrainingHistory([(name: "run", history: syntheticHistory(epochs: 2, offset: 0))], to: url)
        }
        #expect(message?.contains(url.path) == true, "\(message ?? "no error")")
        #expect(message?.contains("does not exist; create it first") == true, "\(message ?? "no error")")
    }

    @Test func plotOntoFolderRejected() throws {
        let folder = try temporaryFolder()
        let message = errorMessage {
            try plotTrainingHistory([(name: "run", history: syntheticHistory(epochs: 2, offset: 0))], to: folder)
        }
        #expect(message?.contains("is a folder; give a file name inside it") == true, "\(message ?? "no error")")
    }

    @Test func plotRejectsEmptyInput() throws {
        let url = try temporaryFolder().appendingPathComponent("history.png")
        let noRuns = errorMessage { try plotTrainingHistory([], to: url) }
        #expect(noRuns == "plotTrainingHistory needs at least one run, got none")
        let noEpochs = errorMessage { try plotTrainingHistory([(name: "empty", history: History())], to: url) }
        #expect(noEpochs == "run 'empty' has no epochs to plot; train for at least one epoch")
        let tooSmall = errorMessage {
            try plotTrainingHistory([(name: "run", history: syntheticHistory(epochs: 2, offset: 0))], to: url, width: 100, height: 100)
        }
        #expect(tooSmall?.contains("got 100x100") == true)
        #expect(!FileManager.default.fileExists(atPath: url.path))
    }

    @Test func mnistCommandPlotsBothLosses() throws {
        let url = try temporaryFolder().appendingPathComponent("mnist.png")
        let result = try runNeuralKit(
            ["mnist", "--limit", "600", "--epochs", "2", "--verbose", "0", "--loss", "both", "--plot", url.path, "--confusion-matrix"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("Wrote the training plot to \(url.path)"), "\(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("Test confusion matrix (sparse_categorical_crossentropy): rows are true classes, columns predicted classes"))
        #expect(lines.contains("Test confusion matrix (categorical_crossentropy): rows are true classes, columns predicted classes"))
        #expect(lines.filter { $0.hasPrefix("    class  precision   recall") }.count == 2)

        let image = try #require(decodePNG(url))
        #expect(image.width == 1200)
        #expect(image.height == 520)
        #expect(image.pixels.contains(Self.blue), "the sparse run's colour is missing")
        #expect(image.pixels.contains(Self.orange), "the categorical run's colour is missing")
    }

    @Test func mnistCommandChecksPlotPathFirst() throws {
        let wrongExtension = try runNeuralKit(["mnist", "--plot", "history.jpg"])
        #expect(wrongExtension.status == 2)
        #expect(wrongExtension.error.contains("--plot needs a file name ending in .png, got 'history.jpg'"), "\(wrongExtension.error)")

        let missingFolder = try runNeuralKit(["mnist", "--plot", "/nonexistent/plots/history.png"])
        #expect(missingFolder.status == 1)
        #expect(missingFolder.error.contains(
            "/nonexistent/plots/history.png: cannot be written because the folder /nonexistent/plots does not exist"),
            "\(missingFolder.error)")
        #expect(missingFolder.output.isEmpty, "training started before the plot path was checked")
    }

    @Test func confusionMatrixOfHandMadeCase() throws {
        let matrix = try confusionMatrix(labels: [0, 0, 1, 1, 2, 2, 2], predictions: [0, 1, 1, 1, 2, 0, 2], classes: 4)
        #expect(matrix.counts == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
        #expect(matrix.total == 7)
        #expect(abs(matrix.accuracy - 5.0 / 7) < 1e-12)
        // Class 3 is never predicted and never true, so both its figures are 0.
        let expectedPrecision = [0.5, 2.0 / 3, 1, 0]
        let expectedRecall = [0.5, 1, 2.0 / 3, 0]
        for index in 0..<4 {
            #expect(abs(matrix.precision[index] - expectedPrecision[index]) < 1e-12, "precision of class \(index)")
            #expect(abs(matrix.recall[index] - expectedRecall[index]) < 1e-12, "recall of class \(index)")
        }

        let lines = matrix.formatted().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "true\\pred  0  1  2  3")
        #expect(lines[1] == "        0  1  1  0  0")
        #expect(lines[3] == "        2  1  0  2  0")
        #expect(lines[6] == "    class  precision   recall")
        #expect(lines[8] == "        1     0.6667   1.0000")
    }

    @Test func confusionMatrixRejectsBadInput() {
        #expect(errorMessage { _ = try confusionMatrix(labels: [0, 1], predictions: [0], classes: 2) }
            == "confusionMatrix got 2 labels but 1 predictions; pass one prediction per label")
        #expect(errorMessage { _ = try confusionMatrix(labels: [0, 2], predictions: [0, 1], classes: 2) }
            == "label 2 at index 1 is outside 0..<2")
        #expect(errorMessage { _ = try confusionMatrix(labels: [0], predictions: [-1], classes: 2) }
            == "prediction -1 at index 0 is outside 0..<2")
        #expect(errorMessage { _ = try confusionMatrix(labels: [], predictions: [], classes: 0) }
            == "confusionMatrix needs at least 1 class, got 0")
    }

    @Test func predictedClassesTakeFirstMaximum() throws {
        let outputs = Tensor<Float>(shape: [3, 3], scalars: [0.1, 0.7, 0.2, 0.5, 0.5, 0, 0, 0, 1])
        #expect(try predictedClasses(outputs) == [1, 0, 2])
    }

    @Test func resizeAveragesAreas() {
        let image = GrayscaleImage(width: 4, height: 2, pixels: [0, 1, 1, 1, 0, 0, 0, 1])
        let halved = image.resized(width: 2, height: 1)
        #expect(halved.pixels == [0.25, 0.75])

        // From 2 to 3 columns, the middle output pixel covers half of each input pixel.
        let widened = GrayscaleImage(width: 2, height: 1, pixels: [0, 1]).resized(width: 3, height: 1)
        #expect(widened.pixels.map { ($0 * 1000).rounded() / 1000 } == [0, 0.5, 1])
    }

    @Test func framingCropsScalesAndCentres() throws {
        // A 10 x 40 bar near the corner of a 100 x 120 image.
        var pixels = [Float](repeating: 0, count: 100 * 120)
        for y in 3..<43 {
            for x in 5..<15 { pixels[y * 100 + x] = 1 }
        }
        let image = GrayscaleImage(width: 100, height: 120, pixels: pixels)
        let framed = try #require(image.framedLikeMNIST(width: 28, height: 28))
        #expect(framed.width == 28)
        #expect(framed.height == 28)

        // Scaled to 5 x 20, keeping the aspect ratio, and placed at the centre.
        let lit = (0..<28).flatMap { y in (0..<28).map { x in (x, y) } }.filter { framed[$0.0, $0.1] > 0.5 }
        #expect(Set(lit.map(\.0)) == Set(12..<17))
        #expect(Set(lit.map(\.1)) == Set(4..<24))
        #expect(framed.pixels.reduce(0, +) == 100)
    }

    @Test func framingKeepsDigitInsideFrame() throws {
        // Mass on one end of an L shape pulls the centre of mass; the box still fits.
        var pixels = [Float](repeating: 0, count: 60 * 60)
        for x in 0..<60 { pixels[59 * 60 + x] = 1 }
        for y in 0..<60 { pixels[y * 60] = 1 }
        let framed = try #require(GrayscaleImage(width: 60, height: 60, pixels: pixels).framedLikeMNIST(width: 28, height: 28))
        let total = framed.pixels.reduce(0, +)
        #expect(abs(total - 119 * Float(20 * 20) / Float(60 * 60)) < 0.01, "no mass cut off: \(total)")
    }

    @Test func framingBlankImageGivesNil() {
        let blank = GrayscaleImage(width: 5, height: 5, pixels: [Float](repeating: 0.1, count: 25))
        #expect(blank.framedLikeMNIST(width: 28, height: 28) == nil)
    }

    @Test func lightBorderDetectedAndInverted() {
        var pixels = [Float](repeating: 1, count: 25)
        pixels[12] = 0
        let darkOnLight = GrayscaleImage(width: 5, height: 5, pixels: pixels)
        #expect(darkOnLight.hasLightBorder)
        #expect(!darkOnLight.inverted().hasLightBorder)
        #expect(darkOnLight.inverted()[2, 2] == 1)
    }

    @Test(arguments: [("rgb", CAIRO_FORMAT_RGB24), ("rgba", CAIRO_FORMAT_ARGB32), ("gray", CAIRO_FORMAT_A8)])
    func pngOfEachColourTypeRead(name: String, format: cairo_format_t) throws {
        let url = try temporaryFolder().appendingPathComponent("\(name).png")
        writeDiscPNG(to: url, size: 40, lightOnDark: true, format: format)
        let file = try readGrayscaleImages(from: url)
        #expect(file.format == .png)
        #expect(file.images.count == 1)
        let image = try #require(file.images.first)
        #expect(image.width == 40)
        #expect(image.height == 40)
        #expect(image[20, 20] == 1, "centre of the disc")
        #expect(image[1, 1] == 0, "corner")
        #expect(!image.hasLightBorder)
    }

    @Test func idxStackReadAsImages() throws {
        let url = try temporaryFolder().appendingPathComponent("images-idx3-ubyte")
        try writeIDX(to: url, dimensions: [2, 2, 3], bytes: [0, 51, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0])
        let file = try readGrayscaleImages(from: url)
        #expect(file.format == .idx)
        #expect(file.images.count == 2)
        #expect(maxRelativeDifference(file.images[0].pixels, [0, 0.2, 1, 0, 0, 0]) < 1e-6)
        #expect(maxRelativeDifference(file.images[1].pixels, [1, 1, 1, 0, 0, 0]) < 1e-6)
    }

    @Test func oversizedPNGRejectedBeforeDecoding() throws {
        // A PNG signature and an IHDR chunk for 20000x20000 pixels, without image data.
        var bytes: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]
        bytes += [0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20, 8, 0, 0, 0, 0, 0, 0, 0, 0]
        let url = try temporaryFolder().appendingPathComponent("huge.png")
        try Data(bytes).write(to: url)
        let message = errorMessage { _ = try readGrayscaleImages(from: url) }
        #expect(message?.contains("is 20000x20000 pixels, more than the limit") == true, "\(message ?? "no error")")
    }

    @Test func imageFileErrorsNameFileAndProblem() throws {
        let folder = try temporaryFolder()
        let labels = folder.appendingPathComponent("labels-idx1-ubyte")
        try writeIDX(to: labels, dimensions: [3], bytes: [1, 2, 3])
        let text = folder.appendingPathComponent("notes.png")
        try Data("not an image".utf8).write(to: text)
        let corrupt = folder.appendingPathComponent("corrupt.png")
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3, 4]).write(to: corrupt)
        let color = folder.appendingPathComponent("color-idx4-ubyte")
        try writeIDX(to: color, dimensions: [1, 2, 2, 3], bytes: [UInt8](repeating: 0, count: 12))

        let cases: [(URL, String)] = [
            (folder.appendingPathComponent("missing.png"), "file not found"),
            (labels, "contains 1-D data of shape (3,), not 2-D images"),
            (text, "is not a PNG image or an IDX file (it starts with bytes 6e 6f 74 20)"),
            (corrupt, "is not a valid PNG image"),
            (color, "with 3 channels; only 1-channel (grayscale) images are supported"),
            (folder, "is a folder"),
        ]
        for (url, expected) in cases {
            let message = errorMessage { _ = try readGrayscaleImages(from: url) }
            #expect(message?.hasPrefix(url.path + ": ") == true, "\(message ?? "no error")")
            #expect(message?.contains(expected) == true, "\(message ?? "no error")")
        }
    }
}
