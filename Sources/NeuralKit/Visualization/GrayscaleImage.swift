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

extension GrayscaleImage {
    /// Frames a light-on-dark digit the way MNIST framed its digits. The image is cropped
    /// to the pixels above `threshold`, and the crop is scaled, keeping its aspect ratio,
    /// so that its longer side spans 20/28 of the frame's shorter side. The crop is then
    /// placed with its centre of mass at the frame's centre, moved inward if it would
    /// stick out.
    ///
    /// - Returns: the framed image, or nil when no pixel exceeds `threshold`.
    /// - Precondition: `width` and `height` are positive.
    public func framedLikeMNIST(width frameWidth: Int, height frameHeight: Int, threshold: Float = 0.2) -> GrayscaleImage? {
        checkPrecondition(frameWidth > 0 && frameHeight > 0, "frame size must be positive, got \(frameWidth)x\(frameHeight)")
        var (left, right, top, bottom) = (width, -1, height, -1)
        for y in 0..<height {
            for x in 0..<width where self[x, y] > threshold {
                left = min(left, x)
                right = max(right, x)
                top = min(top, y)
                bottom = max(bottom, y)
            }
        }
        guard right >= 0 else { return nil }

        let boxWidth = right - left + 1
        let boxHeight = bottom - top + 1
        var cropped: [Float] = []
        cropped.reserveCapacity(boxWidth * boxHeight)
        for y in top...bottom { cropped += pixels[(y * width + left)...(y * width + right)] }
        let box = GrayscaleImage(width: boxWidth, height: boxHeight, pixels: cropped)

        let longest = max(1, Int((Double(min(frameWidth, frameHeight)) * 20 / 28).rounded()))
        let scale = Double(longest) / Double(max(boxWidth, boxHeight))
        let scaled = box.resized(
            width: max(1, Int((Double(boxWidth) * scale).rounded())), height: max(1, Int((Double(boxHeight) * scale).rounded())))

        var (mass, massX, massY) = (0.0, 0.0, 0.0)
        for y in 0..<scaled.height {
            for x in 0..<scaled.width {
                let value = Double(scaled[x, y])
                mass += value
                massX += value * (Double(x) + 0.5)
                massY += value * (Double(y) + 0.5)
            }
        }
        let centreX = mass > 0 ? massX / mass : Double(scaled.width) / 2
        let centreY = mass > 0 ? massY / mass : Double(scaled.height) / 2
        let offsetX = min(max(Int((Double(frameWidth) / 2 - centreX).rounded()), 0), max(0, frameWidth - scaled.width))
        let offsetY = min(max(Int((Double(frameHeight) / 2 - centreY).rounded()), 0), max(0, frameHeight - scaled.height))

        var framed = [Float](repeating: 0, count: frameWidth * frameHeight)
        for y in 0..<min(scaled.height, frameHeight) {
            for x in 0..<min(scaled.width, frameWidth) {
                framed[(offsetY + y) * frameWidth + offsetX + x] = scaled[x, y]
            }
        }
        return GrayscaleImage(width: frameWidth, height: frameHeight, pixels: framed)
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
