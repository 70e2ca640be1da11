import Foundation

/// A single-channel image with pixel values in [0, 1] (0 black, 1 white), stored row by row.
public struct GrayscaleImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `height * width` values; the pixel at column `x` of row `y` is `pixels[y * width + x]`.
    public var pixels: [Float]

    /// - Precondition: `width` and `height` are positive and `pixels.count == width * height`.
    public init(width: Int, height: Int, pixels: [Float]) {
        checkPrecondition(width > 0 && height > 0, "image size must be positive, got \(width)x\(height)")
        checkPrecondition(pixels.count == width * height, "a \(width)x\(height) image needs \(width * height) pixels, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public subscript(x: Int, y: Int) -> Float { pixels[y * width + x] }

    /// Returns a copy with every value `v` replaced by `1 - v`.
    public func inverted() -> GrayscaleImage {
        GrayscaleImage(width: width, height: height, pixels: pixels.map { 1 - $0 })
    }

    /// Whether more than half of the pixels in a frame along the edges are lighter than
    /// 0.5, as in dark writing on white paper. The frame is 5% of the shorter side thick,
    /// and at least 1 pixel.
    public var hasLightBorder: Bool {
        let thickness = max(1, min(width, height) / 20)
        var light = 0
        var total = 0
        for y in 0..<height {
            for x in 0..<width where x < thickness || x >= width - thickness || y < thickness || y >= height - thickness {
                total += 1
                if self[x, y] > 0.5 { light += 1 }
            }
        }
        return light * 2 > total
    }

    /// Scales the image to `width` by `height` by area averaging: each output pixel is the
    /// mean of the input area it covers, weighting partly covered input pixels by the
    /// covered fraction. The aspect ratio is not kept.
    ///
    /// - Precondition: `width` and `height` are positive.
    public func resized(width newWidth: Int, height newHeight: Int) -> GrayscaleImage {
        checkPrecondition(newWidth > 0 && newHeight > 0, "image size must be positive, got \(newWidth)x\(newHeight)")
        if newWidth == width && newHeight == height { return self }

        // Resample the rows first, then the columns, which equals the 2-D box filter because it is separable.
        let columnWeights = areaWeights(from: width, to: newWidth)
        var rowsResampled = [Float](repeating: 0, count: height * newWidth)
        for y in 0..<height {
            for (x, weights) in columnWeights.enumerated() {
                var sum: Float = 0
                for (source, weight) in weights { sum += pixels[y * width + source] * weight }
                rowsResampled[y * newWidth + x] = sum
            }
        }

        let rowWeights = areaWeights(from: height, to: newHeight)
        var result = [Float](repeating: 0, count: newHeight * newWidth)
        for (y, weights) in rowWeights.enumerated() {
            for (source, weight) in weights {
                for x in 0..<newWidth { result[y * newWidth + x] += rowsResampled[source * newWidth + x] * weight }
            }
        }
        return GrayscaleImage(width: newWidth, height: newHeight, pixels: result)
    }
}

/// For each of `outputCount` output pixels along one axis, the input pixels it covers and
/// their weights, which sum to 1.
private func areaWeights(from inputCount: Int, to outputCount: Int) -> [[(Int, Float)]] {
    let scale = Double(inputCount) / Double(outputCount)
    return (0..<outputCount).map { output in
        let start = Double(output) * scale
        let end = Double(output + 1) * scale
        var weights: [(Int, Float)] = []
        var source = Int(start.rounded(.down))
        while Double(source) < end && source < inputCount {
            let covered = min(end, Double(source + 1)) - max(start, Double(source))
            if covered > 1e-12 { weights.append((source, Float(covered / scale))) }
            source += 1
        }
        return weights
    }
}

/// Stacks images of one size into a `(N, height, width, 1)` tensor, the layout of `MNIST` images.
///
/// - Precondition: `images` is not empty and all images have the same size.
public func imageTensor(_ images: [GrayscaleImage]) -> Tensor<Float> {
    checkPrecondition(!images.isEmpty, "imageTensor needs at least one image")
    let width = images[0].width
    let height = images[0].height
    checkPrecondition(images.allSatisfy { $0.width == width && $0.height == height }, "imageTensor needs images of one size")
    return Tensor(shape: [images.count, height, width, 1], scalars: images.flatMap(\.pixels))
}
