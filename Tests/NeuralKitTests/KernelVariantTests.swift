import CNeuralKitKernels
import Testing

@testable import NeuralKit

// The AVX-512 versions of max pooling, pooling backward, im2col and dropout must give the
// generic versions' results bit for bit, and the fused matrix product and ReLU gradient
// must match the unfused steps. nk_use_generic_kernels switches the whole process, so
// the suite runs its tests one at a time. Other suites may still run while the switch
// is on, which relies on both versions giving identical results.

/// Whether the AVX-512 versions run on this CPU with the switch off.
private let avx512Runs = nk_has_avx512() != 0
private let avx512Requirement: Comment = "the AVX-512 kernels need a CPU with AVX-512F, which this CPU lacks"

private let float32Supported = nk_gemm_supported(NK_PRECISION_FLOAT32) != 0
private let float32Requirement: Comment = "nk_gemm_bias_relu needs a CPU with AVX-512F, which this CPU lacks"

/// The precisions that nk_gemm and nk_gemm_bias_relu run on this CPU.
private let gemmPrecisions = ComputePrecision.allCases.filter { precision in
    nk_gemm_supported(precision.cPrecision) != 0
}

/// The value of prefilled buffers, so that a write outside a kernel's range changes a known value.
private let sentinel: Float = 7

/// Quiet NaNs with different signs and payloads, so a kernel that picks a different NaN
/// than the other version produces different bits.
private let nanPatterns: [Float] = [.nan, -.nan, Float(bitPattern: 0x7FC0_1234)]

private enum KernelVersion: String, CaseIterable {
    case generic
    case avx512 = "AVX-512"

    /// The versions this CPU runs: the generic one, and AVX-512 where the CPU has it.
    static var available: [KernelVersion] { avx512Runs ? [.generic, .avx512] : [.generic] }
}

/// Runs `body` with the kernels of `version` and switches back to the AVX-512 kernels after.
private func withKernels<Result>(_ version: KernelVersion, _ body: () -> Result) -> Result {
    nk_use_generic_kernels(version == .generic ? 1 : 0)
    defer { nk_use_generic_kernels(0) }
    return body()
}

/// Runs `body` with the generic kernels and then with the AVX-512 kernels.
private func runBothVersions<Result>(_ body: () -> Result) -> (generic: Result, avx512: Result) {
    let generic = withKernels(.generic, body)
    let avx512 = withKernels(.avx512, body)
    return (generic, avx512)
}

// MARK: - Comparing results

/// Expects `actual` to equal `expected` bit for bit, so NaN payloads and the sign of zero
/// count, and reports the number of differing elements and the first of them.
private func expectIdentical(
    _ actual: [Float], _ expected: [Float], _ context: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.count == expected.count, "\(context): \(actual.count) elements, expected \(expected.count)")
    let compared = min(actual.count, expected.count)
    let differing = (0..<compared).filter { actual[$0].bitPattern != expected[$0].bitPattern }
    guard let first = differing.first else { return }
    let message = """
        \(context): \(differing.count) elements differ, the first at \(first): \(describe(actual[first])), \
        expected \(describe(expected[first]))
        """
    Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
}

/// Expects `actual` to equal `expected` and reports the first differing element.
private func expectIdentical(
    _ actual: [Int32], _ expected: [Int32], _ context: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.count == expected.count, "\(context): \(actual.count) elements, expected \(expected.count)")
    let compared = min(actual.count, expected.count)
    let differing = (0..<compared).filter { actual[$0] != expected[$0] }
    guard let first = differing.first else { return }
    let message =
        "\(context): \(differing.count) elements differ, the first at \(first): \(actual[first]), expected \(expected[first])"
    Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
}

/// Returns a Float with its bit pattern, which distinguishes -0 from 0 and one NaN from another.
private func describe(_ value: Float) -> String {
    "\(value) (0x\(String(value.bitPattern, radix: 16, uppercase: true)))"
}

// MARK: - Inputs and geometries

/// Returns values for max pooling: integers from -3 to 3, so windows have ties, with
/// about 3% NaN, 5% -inf, 1% +inf and 2% -0.
private func poolingInput(count: Int, generator: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in
        let draw = Int(generator.next() % 100)
        switch draw {
        case 0..<3: return nanPatterns[draw]
        case 3..<8: return -.infinity
        case 8: return .infinity
        case 9..<11: return -0.0
        default: return Float(draw % 7 - 3)
        }
    }
}

/// Returns uniform values in [-1, 1).
private func uniformValues(count: Int, generator: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in 2 * generator.nextUnitFloat() - 1 }
}

/// A pooling or convolution window and the input it slides over.
private struct WindowShape: CustomStringConvertible {
    let height: Int, width: Int, kernel: Int, stride: Int, padding: Padding

    func geometry(batch: Int, channels: Int) -> ConvolutionGeometry {
        ConvolutionGeometry(
            batch: batch, inputHeight: height, inputWidth: width, channels: channels,
            kernelSize: (kernel, kernel), strides: (stride, stride), padding: padding)
    }

    var description: String {
        "\(height)x\(width) input, \(kernel)x\(kernel) window, stride \(stride), \(padding.rawValue) padding"
    }
}

/// Pooling shapes for both paths of nk_max_pool_backward: the tiled AVX-512 path needs
/// windows that neither overlap nor reach into padding, and all others run the generic
/// path. Odd sizes leave input rows and columns outside every window.
private let poolingShapes = [
    WindowShape(height: 11, width: 11, kernel: 2, stride: 2, padding: .valid),  // tiled, last row and column uncovered
    WindowShape(height: 26, width: 26, kernel: 2, stride: 2, padding: .valid),  // tiled, all covered
    WindowShape(height: 11, width: 11, kernel: 3, stride: 3, padding: .valid),  // tiled, two rows and columns uncovered
    WindowShape(height: 9, width: 10, kernel: 3, stride: 1, padding: .valid),  // overlapping windows
    WindowShape(height: 11, width: 11, kernel: 2, stride: 2, padding: .same),  // last windows clipped at the bottom and right
    WindowShape(height: 7, width: 8, kernel: 3, stride: 1, padding: .same),  // one padded row and column on every side
    WindowShape(height: 10, width: 9, kernel: 3, stride: 2, padding: .same),  // padding on the left only
]

/// Sample ranges [first, end) of a batch of 3: all, a suffix and one middle sample.
private let sampleRanges = [0..<3, 1..<3, 1..<2]

// MARK: - Running the kernels

private func maxPool(
    _ input: [Float], _ g: ConvolutionGeometry, samples: Range<Int>
) -> (output: [Float], argmax: [Int32]) {
    let count = g.batch * g.outputHeight * g.outputWidth * g.channels
    var output = [Float](repeating: sentinel, count: count)
    var argmax = [Int32](repeating: -1, count: count)
    var geometry = g.cGeometry
    nk_max_pool(input, &geometry, samples.lowerBound, samples.upperBound, &output, &argmax)
    return (output, argmax)
}

/// Runs nk_max_pool_backward on an input gradient prefilled with `sentinel`.
private func maxPoolBackward(
    _ outputGradient: [Float], argmax: [Int32], _ g: ConvolutionGeometry, samples: Range<Int>
) -> [Float] {
    var inputGradient = [Float](repeating: sentinel, count: g.inputCount)
    var geometry = g.cGeometry
    nk_max_pool_backward(outputGradient, argmax, &geometry, samples.lowerBound, samples.upperBound, &inputGradient)
    return inputGradient
}

/// Runs nk_dropout on each of `blockRanges` in turn. The mask and output have 16 more
/// elements than `input`, prefilled with `sentinel`, to catch writes past the end.
private func dropout(
    _ input: [Float], rate: Float, seed: UInt64, blockRanges: [Range<Int>]
) -> (mask: [Float], output: [Float]) {
    var mask = [Float](repeating: sentinel, count: input.count + 16)
    var output = [Float](repeating: sentinel, count: input.count + 16)
    for blocks in blockRanges {
        nk_dropout(input, &mask, &output, blocks.lowerBound, blocks.upperBound, input.count, rate, 1 / (1 - rate), seed)
    }
    return (mask, output)
}

/// Elements in one dropout block: each block draws from its own random streams.
private let dropoutBlock = 65_536

private func blockCount(_ count: Int) -> Int { (count + dropoutBlock - 1) / dropoutBlock }

/// Element counts that are not multiples of 16: less than one block, and spanning three.
private let dropoutCounts = [37, dropoutBlock * 2 + 37, dropoutBlock * 3 - 5]

/// Returns dropout input: uniform values in [-1, 1) with a NaN at every 997th element
/// and -0 at every 1009th.
private func dropoutInput(count: Int, generator: inout SeededGenerator) -> [Float] {
    var input = uniformValues(count: count, generator: &generator)
    for index in stride(from: 5, to: count, by: 997) { input[index] = nanPatterns[index % nanPatterns.count] }
    for index in stride(from: 11, to: count, by: 1009) { input[index] = -0.0 }
    return input
}

/// Runs nk_im2col on `samples`. The columns have 32 more elements than the rows need,
/// prefilled with `sentinel`, to catch writes past the end.
private func im2col(_ input: [Float], _ g: ConvolutionGeometry, samples: Range<Int>) -> [Float] {
    let rows = samples.count * g.outputHeight * g.outputWidth
    var columns = [Float](repeating: sentinel, count: rows * g.patchSize + 32)
    var geometry = g.cGeometry
    nk_im2col(input, &geometry, samples.lowerBound, samples.upperBound, &columns)
    return columns
}

// MARK: - Swift references

/// Returns the im2col rows of `samples`, with zero at padded positions.
private func referenceColumns(_ input: [Float], _ g: ConvolutionGeometry, samples: Range<Int>) -> [Float] {
    var columns: [Float] = []
    let sampleSize = g.inputHeight * g.inputWidth * g.channels
    for n in samples {
        for oy in 0..<g.outputHeight {
            for ox in 0..<g.outputWidth {
                for ky in 0..<g.kernelHeight {
                    for kx in 0..<g.kernelWidth {
                        let iy = oy * g.strideHeight - g.padTop + ky
                        let ix = ox * g.strideWidth - g.padLeft + kx
                        let inside = iy >= 0 && iy < g.inputHeight && ix >= 0 && ix < g.inputWidth
                        for c in 0..<g.channels {
                            columns.append(inside ? input[n * sampleSize + (iy * g.inputWidth + ix) * g.channels + c] : 0)
                        }
                    }
                }
            }
        }
    }
    return columns
}

/// Returns whether input position (y, x) lies in some pooling window of `g`.
private func isCovered(y: Int, x: Int, _ g: ConvolutionGeometry) -> Bool {
    func covered(_ position: Int, stride: Int, kernel: Int, pad: Int, outputs: Int) -> Bool {
        (0..<outputs).contains { output in
            let first = output * stride - pad
            return position >= first && position < first + kernel
        }
    }
    return covered(y, stride: g.strideHeight, kernel: g.kernelHeight, pad: g.padTop, outputs: g.outputHeight)
        && covered(x, stride: g.strideWidth, kernel: g.kernelWidth, pad: g.padLeft, outputs: g.outputWidth)
}

@Suite(.serialized) struct KernelVariantTests {
    // MARK: - Max pooling

    /// Channels that are a multiple of 16 run the AVX-512 path, and 3 the generic one in
    /// both runs.
    @Test(.enabled(if: avx512Runs, avx512Requirement), arguments: [3, 16, 32, 64])
    func maxPoolVersionsMatch(channels: Int) {
        var generator = SeededGenerator(seed: 31)
        for shape in poolingShapes {
            let g = shape.geometry(batch: 3, channels: channels)
            let input = poolingInput(count: g.inputCount, generator: &generator)
            let outputsPerSample = g.outputHeight * g.outputWidth * channels
            for samples in sampleRanges {
                let context = "\(shape), \(channels) channels, samples \(samples)"
                let results = runBothVersions { maxPool(input, g, samples: samples) }
                expectIdentical(results.avx512.output, results.generic.output, "\(context), output")
                expectIdentical(results.avx512.argmax, results.generic.argmax, "\(context), argmax")

                // Samples outside the range keep their prefilled values.
                for n in 0..<g.batch where !samples.contains(n) {
                    let range = n * outputsPerSample..<(n + 1) * outputsPerSample
                    #expect(results.avx512.output[range].allSatisfy { $0 == sentinel }, "\(context), sample \(n) output")
                    #expect(results.avx512.argmax[range].allSatisfy { $0 == -1 }, "\(context), sample \(n) argmax")
                }
            }
        }
    }

    // MARK: - Max pooling backward

    /// Compares each version with a scatter-add of the output gradient onto zeros, in
    /// output order, which is how the generic version sums overlapping windows.
    @Test(arguments: [3, 16, 32, 64])
    func maxPoolBackwardMatchesScatterAdd(channels: Int) {
        var generator = SeededGenerator(seed: 32)
        for shape in poolingShapes {
            let g = shape.geometry(batch: 3, channels: channels)
            let input = poolingInput(count: g.inputCount, generator: &generator)
            let argmax = maxPool(input, g, samples: 0..<g.batch).argmax
            let outputGradient = uniformValues(count: argmax.count, generator: &generator)
            let sampleSize = g.inputHeight * g.inputWidth * channels
            let outputsPerSample = g.outputHeight * g.outputWidth * channels

            for samples in sampleRanges {
                var expected = [Float](repeating: sentinel, count: g.inputCount)
                for index in samples.lowerBound * sampleSize..<samples.upperBound * sampleSize { expected[index] = 0 }
                for index in samples.lowerBound * outputsPerSample..<samples.upperBound * outputsPerSample {
                    expected[Int(argmax[index])] += outputGradient[index]
                }

                for version in KernelVersion.available {
                    let context = "\(version.rawValue), \(shape), \(channels) channels, samples \(samples)"
                    let inputGradient = withKernels(version) {
                        maxPoolBackward(outputGradient, argmax: argmax, g, samples: samples)
                    }
                    expectIdentical(inputGradient, expected, context)

                    // Positions outside every window get +0 in place of the sentinel.
                    for n in samples {
                        for y in 0..<g.inputHeight {
                            for x in 0..<g.inputWidth where !isCovered(y: y, x: x, g) {
                                let first = n * sampleSize + (y * g.inputWidth + x) * channels
                                let values = inputGradient[first..<first + channels]
                                #expect(
                                    values.allSatisfy { $0.bitPattern == 0 },
                                    "\(context): uncovered position (\(y), \(x)) of sample \(n) is \(Array(values))")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The generic version adds each gradient onto +0, and +0 + -0 is +0, so the tiled
    /// AVX-512 path must also give +0 where the output gradient is -0.
    @Test(.enabled(if: avx512Runs, avx512Requirement))
    func maxPoolBackwardNegativeZeroGradient() {
        let g = WindowShape(height: 2, width: 2, kernel: 2, stride: 2, padding: .valid).geometry(batch: 1, channels: 16)
        let input = (0..<g.inputCount).map { Float($0) }
        let argmax = maxPool(input, g, samples: 0..<1).argmax
        let outputGradient = [Float](repeating: -0.0, count: argmax.count)
        let results = runBothVersions { maxPoolBackward(outputGradient, argmax: argmax, g, samples: 0..<1) }
        #expect(results.generic.allSatisfy { $0.bitPattern == 0 }, "generic input gradient \(results.generic)")
        expectIdentical(results.avx512, results.generic, "2x2 input, 2x2 window, 16 channels, -0 output gradient")
    }

    // MARK: - Dropout

    @Test(.enabled(if: avx512Runs, avx512Requirement), arguments: [Float(0.25), 0.5, 0.9])
    func dropoutVersionsMatch(rate: Float) {
        var generator = SeededGenerator(seed: 33)
        for count in dropoutCounts {
            let input = dropoutInput(count: count, generator: &generator)
            let seed = generator.next()
            let results = runBothVersions { dropout(input, rate: rate, seed: seed, blockRanges: [0..<blockCount(count)]) }
            let context = "\(count) elements, rate \(rate)"
            expectIdentical(results.avx512.mask, results.generic.mask, "\(context), mask")
            expectIdentical(results.avx512.output, results.generic.output, "\(context), output")
        }
    }

    @Test(arguments: [Float(0.25), 0.5, 0.9])
    func dropoutIndependentOfBlockSplit(rate: Float) {
        var generator = SeededGenerator(seed: 34)
        for count in dropoutCounts where blockCount(count) == 3 {
            let input = dropoutInput(count: count, generator: &generator)
            let seed = generator.next()
            for version in KernelVersion.available {
                let whole = withKernels(version) { dropout(input, rate: rate, seed: seed, blockRanges: [0..<3]) }
                for split in [[2..<3, 0..<1, 1..<2], [0..<1, 1..<3], [0..<2, 2..<3]] {
                    let context = "\(version.rawValue), \(count) elements, rate \(rate), blocks \(split)"
                    let parts = withKernels(version) { dropout(input, rate: rate, seed: seed, blockRanges: split) }
                    expectIdentical(parts.mask, whole.mask, "\(context), mask")
                    expectIdentical(parts.output, whole.output, "\(context), output")
                }
            }
        }
    }

    /// Checks each version's mask and output element by element. The mask is 0 or the
    /// scale, and the output is input * mask, so NaN stays NaN where dropped. Nothing
    /// past the last element changes, and the kept fraction is near 1 - rate.
    @Test(arguments: [Float(0.25), 0.5, 0.9])
    func dropoutOutputIsInputTimesMask(rate: Float) {
        var generator = SeededGenerator(seed: 35)
        let scale = 1 / (1 - rate)
        for count in dropoutCounts {
            let input = dropoutInput(count: count, generator: &generator)
            let seed = generator.next()
            for version in KernelVersion.available {
                let context = "\(version.rawValue), \(count) elements, rate \(rate)"
                let result = withKernels(version) {
                    dropout(input, rate: rate, seed: seed, blockRanges: [0..<blockCount(count)])
                }
                let mask = Array(result.mask[..<count])
                let output = Array(result.output[..<count])

                #expect(mask.allSatisfy { $0 == 0 || $0 == scale }, "\(context): mask values other than 0 and \(scale)")
                expectIdentical(output, zip(input, mask).map { $0 * $1 }, "\(context), output against input * mask")
                #expect(result.mask[count...].allSatisfy { $0 == sentinel }, "\(context): mask written past the end")
                #expect(result.output[count...].allSatisfy { $0 == sentinel }, "\(context): output written past the end")

                let nanIndices = input.indices.filter { input[$0].isNaN }
                #expect(nanIndices.allSatisfy { output[$0].isNaN }, "\(context): a NaN input gave a number")
                if count > dropoutBlock {
                    #expect(nanIndices.contains { mask[$0] == 0 }, "\(context): no NaN input was dropped")
                    let keptFraction = Double(mask.filter { $0 != 0 }.count) / Double(count)
                    #expect(abs(keptFraction - Double(1 - rate)) < 0.01, "\(context): kept fraction \(keptFraction)")
                }
            }
        }
    }

    // MARK: - im2col

    /// 3x3 kernels copy runs of 3, 9, 18 and 96 floats: shorter than one 16-float move,
    /// one move and a masked tail, and whole moves.
    @Test(arguments: [1, 3, 6, 32])
    func im2colMatchesReference(channels: Int) {
        var generator = SeededGenerator(seed: 36)
        let shapes = [
            WindowShape(height: 9, width: 11, kernel: 3, stride: 1, padding: .valid),
            WindowShape(height: 9, width: 11, kernel: 3, stride: 2, padding: .valid),
            WindowShape(height: 9, width: 11, kernel: 3, stride: 1, padding: .same),
            WindowShape(height: 10, width: 7, kernel: 3, stride: 2, padding: .same),
        ]
        for shape in shapes {
            let g = shape.geometry(batch: 3, channels: channels)
            var input = uniformValues(count: g.inputCount, generator: &generator)
            for index in stride(from: 0, to: input.count, by: 13) { input[index] = nanPatterns[index % 3] }
            for index in stride(from: 6, to: input.count, by: 17) { input[index] = -0.0 }

            for samples in sampleRanges {
                let expected = referenceColumns(input, g, samples: samples) + [Float](repeating: sentinel, count: 32)
                for version in KernelVersion.available {
                    let context = "\(version.rawValue), \(shape), \(channels) channels, samples \(samples)"
                    let columns = withKernels(version) { im2col(input, g, samples: samples) }
                    expectIdentical(columns, expected, context)
                }
            }
        }
    }

    // MARK: - Fused matrix product

    /// Compares nk_gemm_bias_relu with nk_gemm followed by the bias and `x < 0 ? 0 : x`
    /// in Swift. The sizes leave partial 12 x 32 tiles, and k 700 takes three depth blocks.
    /// A NaN in a makes one row of c NaN, which ReLU must keep.
    @Test(.enabled(if: float32Supported, float32Requirement), arguments: gemmPrecisions)
    func gemmBiasReluMatchesUnfused(precision: ComputePrecision) {
        var generator = SeededGenerator(seed: 37)
        for m in [13, 25, 907] {
            for n in [9, 32, 64, 70] {
                for k in [9, 288, 700] {
                    var a = uniformValues(count: m * k, generator: &generator)
                    a[5 * k + 3] = .nan
                    let b = uniformValues(count: k * n, generator: &generator)
                    let bias = uniformValues(count: n, generator: &generator)
                    var product = [Float](repeating: .nan, count: m * n)
                    let productStatus = nk_gemm(precision.cPrecision, 0, 0, m, n, k, 1, a, k, b, n, 0, &product, n)
                    #expect(productStatus == 0, "nk_gemm failed")

                    for useBias in [false, true] {
                        for relu in [false, true] {
                            let context = "\(precision), m \(m), n \(n), k \(k), bias \(useBias), relu \(relu)"
                            var expected = product
                            for index in expected.indices {
                                if useBias { expected[index] += bias[index % n] }
                                if relu { expected[index] = expected[index] < 0 ? 0 : expected[index] }
                            }

                            // c starts as NaN, which the fused product must overwrite.
                            var fused = [Float](repeating: .nan, count: m * n)
                            let status = useBias
                                ? nk_gemm_bias_relu(precision.cPrecision, m, n, k, a, b, bias, relu ? 1 : 0, &fused)
                                : nk_gemm_bias_relu(precision.cPrecision, m, n, k, a, b, nil, relu ? 1 : 0, &fused)
                            #expect(status == 0, "\(context): nk_gemm_bias_relu failed")
                            expectIdentical(fused, expected, context)
                            #expect(fused[5 * n..<6 * n].allSatisfy { $0.isNaN }, "\(context): the NaN row lost its NaN")
                        }
                    }
                }
            }
        }
    }

    /// CPUBackend fuses bias and ReLU into the product unless it must also store the
    /// logits, so asking for logits runs the unfused steps on the same input.
    @Test(.enabled(if: float32Supported, float32Requirement), arguments: gemmPrecisions)
    func convolutionFusedMatchesUnfused(precision: ComputePrecision) throws {
        var generator = SeededGenerator(seed: 38)
        let backend = try CPUBackend(threadCount: 2, precision: precision)
        let geometries = [
            WindowShape(height: 12, width: 11, kernel: 3, stride: 1, padding: .same).geometry(batch: 5, channels: 3),
            WindowShape(height: 6, width: 6, kernel: 1, stride: 1, padding: .valid).geometry(batch: 4, channels: 40),
        ]
        for g in geometries {
            for filters in [8, 32, 45] {
                let input = uniformValues(count: g.inputCount, generator: &generator)
                let kernel = uniformValues(count: g.patchSize * filters, generator: &generator)
                let bias = uniformValues(count: filters, generator: &generator)
                let outputCount = g.outputPositions * filters
                for activation in [Activation.linear, .relu] {
                    let context = "\(precision), patch \(g.patchSize), \(filters) filters, \(activation)"
                    var fused = [Float](repeating: .nan, count: outputCount)
                    var unfused = [Float](repeating: .nan, count: outputCount)
                    var logits = [Float](repeating: .nan, count: outputCount)
                    backend.convolutionForward(
                        input, kernel: kernel, bias: bias, geometry: g, filters: filters, activation: activation,
                        into: &fused, logits: nil)
                    backend.convolutionForward(
                        input, kernel: kernel, bias: bias, geometry: g, filters: filters, activation: activation,
                        into: &unfused, logits: &logits)
                    expectIdentical(fused, unfused, context)
                }
            }
        }
    }

    // MARK: - ReLU backward

    /// Columns 32 keep the sums in a local array, and 300 take the wide path. Gradients
    /// of NaN and -0, and outputs of 0 and NaN, check that the select copies the gradient
    /// bit for bit where the output is positive and gives 0 elsewhere.
    @Test(arguments: [false, true])
    func reluBackwardMatchesReference(relu: Bool) {
        var generator = SeededGenerator(seed: 39)
        for columns in [32, 300] {
            for rows in [1, 37] {
                let count = rows * columns
                var gradient = uniformValues(count: count, generator: &generator)
                var output = uniformValues(count: count, generator: &generator)
                gradient[1] = .nan
                gradient[2] = -0.0
                output[1] = 0.5
                output[2] = 0.5
                if count > 4 * columns {
                    gradient[3 * columns + 4] = .nan
                    output[3 * columns + 4] = -0.5
                    output[2 * columns + 7] = 0
                    output[columns + 9] = .nan
                }
                let initialSums = uniformValues(count: columns, generator: &generator)

                // The elementwise result and column sums in row order from the initial sums.
                let expected = zip(gradient, output).map { g, y in !relu || y > 0 ? g : 0 }
                var expectedSums = initialSums
                var magnitudes = initialSums.map(abs)
                for r in 0..<rows {
                    for c in 0..<columns {
                        expectedSums[c] += expected[r * columns + c]
                        magnitudes[c] += abs(expected[r * columns + c])
                    }
                }
                // A recursive sum of rows + 1 floats errs by at most about rows * 2^-24 of the
                // sum of their magnitudes, and the tolerance is twice that.
                let tolerance = Float(rows + 1) * 0x1p-23

                for aliased in [false, true] {
                    for withSums in [false, true] {
                        let context = "relu \(relu), \(rows) x \(columns), aliased \(aliased), sums \(withSums)"
                        var result = [Float](repeating: sentinel, count: count)
                        var sums = initialSums
                        if aliased {
                            result = gradient
                            result.withUnsafeMutableBufferPointer { buffer in
                                let pointer = buffer.baseAddress!
                                if withSums {
                                    nk_relu_backward(pointer, output, pointer, rows, columns, relu ? 1 : 0, &sums)
                                } else {
                                    nk_relu_backward(pointer, output, pointer, rows, columns, relu ? 1 : 0, nil)
                                }
                            }
                        } else if withSums {
                            nk_relu_backward(gradient, output, &result, rows, columns, relu ? 1 : 0, &sums)
                        } else {
                            nk_relu_backward(gradient, output, &result, rows, columns, relu ? 1 : 0, nil)
                        }
                        expectIdentical(result, expected, context)
                        guard withSums else { continue }
                        for c in 0..<columns {
                            if expectedSums[c].isNaN {
                                #expect(sums[c].isNaN, "\(context): column \(c) sum \(sums[c]), expected NaN")
                            } else {
                                #expect(
                                    abs(sums[c] - expectedSums[c]) <= tolerance * magnitudes[c],
                                    "\(context): column \(c) sum \(sums[c]), expected \(expectedSums[c])")
                            }
                        }
                    }
                }
            }
        }
    }
}
