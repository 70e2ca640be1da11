import COpenBLAS
import Dispatch
import Foundation

/// Kernels for the CPU: matrix products through OpenBLAS (`cblas_sgemm`), the rest in
/// Swift, split over `threadCount` threads by batch sample or by row.
///
/// Results are deterministic for a fixed thread count: every split is fixed by the
/// sizes alone and no two threads add into the same element.
public final class CPUBackend: Backend {
    public let threadCount: Int

    /// Creates the backend and sets OpenBLAS to `threadCount` threads (default: one per core).
    public init(threadCount: Int = ProcessInfo.processInfo.activeProcessorCount) {
        precondition(threadCount >= 1, "threadCount must be at least 1, got \(threadCount)")
        self.threadCount = threadCount
        openblas_set_num_threads(Int32(threadCount))
    }

    public func matrixMultiply(
        _ a: UnsafePointer<Float>, transposeA: Bool,
        _ b: UnsafePointer<Float>, transposeB: Bool,
        into c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float, beta: Float
    ) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            // BLAS leaves c untouched when k is 0 only for beta 1; scale it here for the general rule.
            for index in 0..<(m * n) { c[index] = beta == 0 ? 0 : beta * c[index] }
            return
        }
        cblas_sgemm(
            CblasRowMajor,
            transposeA ? CblasTrans : CblasNoTrans,
            transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k),
            alpha,
            a, Int32(transposeA ? m : k),
            b, Int32(transposeB ? k : n),
            beta,
            c, Int32(n))
    }

    public func im2col(_ input: UnsafePointer<Float>, geometry g: ConvolutionGeometry, into columns: UnsafeMutablePointer<Float>) {
        let rowsPerSample = g.outputHeight * g.outputWidth
        let patchSize = g.patchSize
        let channels = g.channels
        parallelRanges(count: g.batch) { samples in
            for n in samples {
                let sampleInput = input + n * g.inputHeight * g.inputWidth * channels
                var row = columns + n * rowsPerSample * patchSize
                for oy in 0..<g.outputHeight {
                    for ox in 0..<g.outputWidth {
                        var destination = row
                        for ky in 0..<g.kernelHeight {
                            let iy = oy * g.strideHeight - g.padTop + ky
                            for kx in 0..<g.kernelWidth {
                                let ix = ox * g.strideWidth - g.padLeft + kx
                                if iy >= 0 && iy < g.inputHeight && ix >= 0 && ix < g.inputWidth {
                                    destination.update(from: sampleInput + (iy * g.inputWidth + ix) * channels, count: channels)
                                } else {
                                    destination.update(repeating: 0, count: channels)
                                }
                                destination += channels
                            }
                        }
                        row += patchSize
                    }
                }
            }
        }
    }

    public func col2im(_ columns: UnsafePointer<Float>, geometry g: ConvolutionGeometry, into inputGradient: UnsafeMutablePointer<Float>) {
        let rowsPerSample = g.outputHeight * g.outputWidth
        let patchSize = g.patchSize
        let channels = g.channels
        let sampleSize = g.inputHeight * g.inputWidth * channels
        parallelRanges(count: g.batch) { samples in
            for n in samples {
                let sampleGradient = inputGradient + n * sampleSize
                sampleGradient.update(repeating: 0, count: sampleSize)
                var row = columns + n * rowsPerSample * patchSize
                for oy in 0..<g.outputHeight {
                    for ox in 0..<g.outputWidth {
                        var source = row
                        for ky in 0..<g.kernelHeight {
                            let iy = oy * g.strideHeight - g.padTop + ky
                            for kx in 0..<g.kernelWidth {
                                let ix = ox * g.strideWidth - g.padLeft + kx
                                if iy >= 0 && iy < g.inputHeight && ix >= 0 && ix < g.inputWidth {
                                    let destination = sampleGradient + (iy * g.inputWidth + ix) * channels
                                    for c in 0..<channels { destination[c] += source[c] }
                                }
                                source += channels
                            }
                        }
                        row += patchSize
                    }
                }
            }
        }
    }

    public func maxPool(
        _ input: UnsafePointer<Float>, geometry g: ConvolutionGeometry,
        into output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>
    ) {
        precondition(g.inputCount <= Int(Int32.max), "max pooling input of \(g.inputCount) elements exceeds Int32 offsets")
        let channels = g.channels
        let sampleSize = g.inputHeight * g.inputWidth * channels
        let outputsPerSample = g.outputHeight * g.outputWidth * channels
        parallelRanges(count: g.batch) { samples in
            for n in samples {
                var outputIndex = n * outputsPerSample
                for oy in 0..<g.outputHeight {
                    let firstRow = max(oy * g.strideHeight - g.padTop, 0)
                    let endRow = min(oy * g.strideHeight - g.padTop + g.kernelHeight, g.inputHeight)
                    for ox in 0..<g.outputWidth {
                        let firstColumn = max(ox * g.strideWidth - g.padLeft, 0)
                        let endColumn = min(ox * g.strideWidth - g.padLeft + g.kernelWidth, g.inputWidth)
                        for c in 0..<channels {
                            var best = -Float.infinity
                            var bestOffset = n * sampleSize + (firstRow * g.inputWidth + firstColumn) * channels + c
                            for iy in firstRow..<endRow {
                                for ix in firstColumn..<endColumn {
                                    let offset = n * sampleSize + (iy * g.inputWidth + ix) * channels + c
                                    // `>` keeps the first maximum, as TensorFlow does; NaN propagates.
                                    if input[offset] > best || input[offset].isNaN {
                                        best = input[offset]
                                        bestOffset = offset
                                        if best.isNaN { break }
                                    }
                                }
                            }
                            output[outputIndex] = best
                            argmax[outputIndex] = Int32(bestOffset)
                            outputIndex += 1
                        }
                    }
                }
            }
        }
    }

    public func maxPoolBackward(
        _ outputGradient: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, outputCount: Int,
        into inputGradient: UnsafeMutablePointer<Float>, inputCount: Int
    ) {
        inputGradient.update(repeating: 0, count: inputCount)
        for index in 0..<outputCount {
            inputGradient[Int(argmax[index])] += outputGradient[index]
        }
    }

    public func addBiasAndActivate(
        _ matrix: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
        bias: UnsafePointer<Float>?, activation: Activation
    ) {
        parallelRanges(count: rows, minimumChunk: max(1, 16_384 / max(columns, 1))) { rowRange in
            for r in rowRange {
                let row = matrix + r * columns
                if let bias {
                    for c in 0..<columns { row[c] += bias[c] }
                }
                switch activation {
                case .linear:
                    break
                case .relu:
                    for c in 0..<columns where !(row[c] > 0) && !row[c].isNaN { row[c] = 0 }
                case .sigmoid:
                    for c in 0..<columns { row[c] = stableSigmoid(row[c]) }
                case .tanh:
                    for c in 0..<columns { row[c] = Foundation.tanh(row[c]) }
                case .softmax:
                    softmaxRow(row, count: columns)
                }
            }
        }
    }

    public func activationBackward(
        _ gradient: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>,
        rows: Int, columns: Int, activation: Activation
    ) {
        if activation == .linear { return }
        parallelRanges(count: rows, minimumChunk: max(1, 16_384 / max(columns, 1))) { rowRange in
            for r in rowRange {
                let g = gradient + r * columns
                let y = output + r * columns
                switch activation {
                case .linear:
                    break
                case .relu:
                    for c in 0..<columns where !(y[c] > 0) { g[c] = 0 }
                case .sigmoid:
                    for c in 0..<columns { g[c] *= y[c] * (1 - y[c]) }
                case .tanh:
                    for c in 0..<columns { g[c] *= 1 - y[c] * y[c] }
                case .softmax:
                    var dot: Float = 0
                    for c in 0..<columns { dot += g[c] * y[c] }
                    for c in 0..<columns { g[c] = y[c] * (g[c] - dot) }
                }
            }
        }
    }

    public func sumRows(_ matrix: UnsafePointer<Float>, rows: Int, columns: Int, into result: UnsafeMutablePointer<Float>) {
        result.update(repeating: 0, count: columns)
        for r in 0..<rows {
            let row = matrix + r * columns
            for c in 0..<columns { result[c] += row[c] }
        }
    }

    /// Runs `body` over `0..<count` split into at most `threadCount` contiguous ranges,
    /// or inline when `count` is below `minimumChunk` per thread.
    func parallelRanges(count: Int, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        let chunks = min(threadCount, count / max(minimumChunk, 1))
        if chunks <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = count * chunk / chunks
            let end = count * (chunk + 1) / chunks
            body(start..<end)
        }
    }
}

/// Replaces a row of logits by its softmax, subtracting the maximum first so that
/// large logits do not overflow.
func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int) {
    var maximum = -Float.infinity
    for c in 0..<count { maximum = max(maximum, row[c]) }
    var sum: Float = 0
    for c in 0..<count {
        row[c] = expf(row[c] - maximum)
        sum += row[c]
    }
    let scale = 1 / sum
    for c in 0..<count { row[c] *= scale }
}

/// The logistic function, computed without overflow for large negative inputs.
func stableSigmoid(_ x: Float) -> Float {
    if x >= 0 {
        return 1 / (1 + expf(-x))
    }
    let e = expf(x)
    return e / (1 + e)
}
