import CNeuralKitKernels
import COpenBLAS
import Dispatch
import Foundation

/// Kernels for the CPU: single-threaded OpenBLAS `sgemm` calls on cache-sized chunks of
/// the batch, with the chunks spread over `threadCount` threads.
///
/// A convolution runs im2col, the matrix product, bias and activation on one chunk of
/// samples at a time, so the im2col buffer (about 1 MiB) stays in the core's cache and
/// no batch-sized im2col matrix is ever allocated. Threads take chunks in a fixed
/// round-robin order and sum their kernel gradients in thread order, so results are
/// bit-identical from run to run for the same `threadCount`.
///
/// Safe to call from several threads at once, as when two models train side by side:
/// each call borrows its own set of scratch buffers from a pool.
public final class CPUBackend: Backend {
    public let threadCount: Int

    /// The target size of one chunk's im2col buffer, in floats (1 MiB).
    private let chunkFloats = 1 << 18
    private let scratchPool = NSLock()
    private var idleScratch: [[ThreadScratch]] = []

    /// Creates the backend. OpenBLAS is set to one thread, since the backend runs its
    /// own threads over batch chunks.
    ///
    /// - Parameter threadCount: threads for kernels; default one per active processor.
    public init(threadCount: Int = ProcessInfo.processInfo.activeProcessorCount) {
        checkPrecondition(threadCount >= 1, "threadCount must be at least 1, got \(threadCount)")
        self.threadCount = threadCount
        openblas_set_num_threads(1)
    }

    /// Runs `body` with one scratch set per thread, taken from the pool and returned after.
    private func withScratch<Result>(_ body: ([ThreadScratch]) -> Result) -> Result {
        scratchPool.lock()
        let scratch = idleScratch.popLast() ?? (0..<threadCount).map { _ in ThreadScratch() }
        scratchPool.unlock()
        defer {
            scratchPool.lock()
            idleScratch.append(scratch)
            scratchPool.unlock()
        }
        return body(scratch)
    }

    public func matrixMultiply(
        _ a: UnsafePointer<Float>, transposeA: Bool,
        _ b: UnsafePointer<Float>, transposeB: Bool,
        into c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float, beta: Float
    ) {
        guard m > 0, n > 0 else { return }
        // Each thread computes a block of rows of c. That block of op(a) starts
        // rows.lowerBound rows down a, or as many columns across when a is transposed.
        parallelRanges(count: m, minimumChunk: 64) { rows in
            let aBlock = transposeA ? a + rows.lowerBound : a + rows.lowerBound * k
            gemm(
                aBlock, transposeA: transposeA, lda: transposeA ? m : k, b, transposeB: transposeB, ldb: transposeB ? k : n,
                into: c + rows.lowerBound * n, m: rows.count, n: n, k: k, alpha: alpha, beta: beta)
        }
    }

    public func convolutionForward(
        _ input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        geometry g: ConvolutionGeometry, filters: Int, activation: Activation,
        into output: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>?
    ) {
        let positions = g.outputHeight * g.outputWidth
        let patchSize = g.patchSize
        withScratch { scratch in
            forEachChunk(batch: g.batch, floatsPerSample: positions * patchSize, scratch: scratch) { workspace, samples in
                let firstRow = samples.lowerBound * positions
                let rows = samples.count * positions
                let columns = im2col(input, geometry: g, samples: samples, workspace: workspace)
                let outputChunk = output + firstRow * filters
                gemm(
                    columns, transposeA: false, lda: patchSize, kernel, transposeB: false, ldb: filters,
                    into: outputChunk, m: rows, n: filters, k: patchSize, alpha: 1, beta: 0)
                for row in 0..<rows {
                    let values = outputChunk + row * filters
                    if let bias {
                        for c in 0..<filters { values[c] += bias[c] }
                    }
                    if let logits {
                        (logits + (firstRow + row) * filters).update(from: values, count: filters)
                    }
                    activate(values, count: filters, activation: activation)
                }
            }
        }
    }

    public func convolutionBackward(
        _ outputGradient: UnsafePointer<Float>, output: UnsafePointer<Float>, activation: Activation,
        input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, geometry g: ConvolutionGeometry, filters: Int,
        kernelGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?,
        inputGradient: UnsafeMutablePointer<Float>?
    ) {
        let positions = g.outputHeight * g.outputWidth
        let patchSize = g.patchSize
        let kernelCount = patchSize * filters
        withScratch { scratch in
            for workspace in scratch {
                workspace.reserveGradients(kernelCount: kernelCount, biasCount: filters)
                workspace.hasGradient = false
            }

            forEachChunk(batch: g.batch, floatsPerSample: positions * patchSize, scratch: scratch) { workspace, samples in
                let firstRow = samples.lowerBound * positions
                let rows = samples.count * positions
                // The pre-activation gradient of a chunk lives only in the thread's scratch.
                workspace.reservePreActivationGradient(rows * filters)
                let gradientChunk = workspace.preActivationGradient
                activationBackward(
                    outputGradient + firstRow * filters, output: output + firstRow * filters, into: gradientChunk,
                    rows: rows, columns: filters, activation: activation)

                // Kernel and bias gradients: this thread's chunks add into its own partial sums.
                let columns = im2col(input, geometry: g, samples: samples, workspace: workspace)
                let beta: Float = workspace.hasGradient ? 1 : 0
                gemm(
                    columns, transposeA: true, lda: patchSize, gradientChunk, transposeB: false, ldb: filters,
                    into: workspace.kernelGradient, m: patchSize, n: filters, k: rows, alpha: 1, beta: beta)
                if !workspace.hasGradient { workspace.biasGradient.update(repeating: 0, count: filters) }
                for row in 0..<rows {
                    let values = gradientChunk + row * filters
                    for c in 0..<filters { workspace.biasGradient[c] += values[c] }
                }
                workspace.hasGradient = true

                guard let inputGradient else { return }
                let sampleSize = g.inputHeight * g.inputWidth * g.channels
                if g.isPointwise {
                    gemm(
                        gradientChunk, transposeA: false, lda: filters, kernel, transposeB: true, ldb: filters,
                        into: inputGradient + samples.lowerBound * sampleSize, m: rows, n: patchSize, k: filters, alpha: 1, beta: 0)
                } else {
                    gemm(
                        gradientChunk, transposeA: false, lda: filters, kernel, transposeB: true, ldb: filters,
                        into: workspace.columns, m: rows, n: patchSize, k: filters, alpha: 1, beta: 0)
                    var geometry = g.cGeometry
                    nk_col2im(workspace.columns, &geometry, samples.lowerBound, samples.upperBound, inputGradient)
                }
            }

            // Sum the partial gradients in thread order, so the result does not depend on timing.
            kernelGradient.update(repeating: 0, count: kernelCount)
            biasGradient?.update(repeating: 0, count: filters)
            for workspace in scratch where workspace.hasGradient {
                for index in 0..<kernelCount { kernelGradient[index] += workspace.kernelGradient[index] }
                if let biasGradient {
                    for c in 0..<filters { biasGradient[c] += workspace.biasGradient[c] }
                }
            }
        }
    }

    public func maxPool(
        _ input: UnsafePointer<Float>, geometry g: ConvolutionGeometry,
        into output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>
    ) {
        checkPrecondition(g.inputCount <= Int(Int32.max), "max pooling input of \(g.inputCount) elements exceeds Int32 offsets")
        var geometry = g.cGeometry
        parallelRanges(count: g.batch) { samples in
            nk_max_pool(input, &geometry, samples.lowerBound, samples.upperBound, output, argmax)
        }
    }

    public func maxPoolBackward(
        _ outputGradient: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, geometry g: ConvolutionGeometry,
        into inputGradient: UnsafeMutablePointer<Float>
    ) {
        // The maxima of sample n lie inside sample n, so threads write disjoint samples.
        var geometry = g.cGeometry
        parallelRanges(count: g.batch) { samples in
            nk_max_pool_backward(outputGradient, argmax, &geometry, samples.lowerBound, samples.upperBound, inputGradient)
        }
    }

    public func dropout(
        _ input: UnsafePointer<Float>, mask: UnsafeMutablePointer<Float>, into output: UnsafeMutablePointer<Float>,
        count: Int, rate: Float, seed: UInt64
    ) {
        let blocks = (count + 65_535) / 65_536
        parallelRanges(count: blocks) { range in
            nk_dropout(input, mask, output, range.lowerBound, range.upperBound, count, rate, 1 / (1 - rate), seed)
        }
    }

    public func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, count: Int) {
        parallelRanges(count: count, minimumChunk: 65_536) { range in
            nk_multiply(a, b, output, range.lowerBound, range.upperBound)
        }
    }

    // MARK: - Chunks and threads

    /// Splits `batch` samples into chunks of about `chunkFloats / floatsPerSample` samples,
    /// a multiple of `threadCount` chunks in all, and runs `body` on each. Thread `t` takes
    /// chunks `t`, `t + threadCount`, ... in order.
    private func forEachChunk(
        batch: Int, floatsPerSample: Int, scratch: [ThreadScratch], _ body: (ThreadScratch, Range<Int>) -> Void
    ) {
        guard batch > 0 else { return }
        let samplesPerTarget = max(1, chunkFloats / max(floatsPerSample, 1))
        var chunkCount = (batch + samplesPerTarget - 1) / samplesPerTarget
        chunkCount = min(batch, (chunkCount + threadCount - 1) / threadCount * threadCount)
        let chunkSize = (batch + chunkCount - 1) / chunkCount
        chunkCount = (batch + chunkSize - 1) / chunkSize
        for workspace in scratch { workspace.reserveColumns(chunkSize * floatsPerSample) }

        let threads = min(threadCount, chunkCount)
        func runThread(_ thread: Int) {
            for chunk in stride(from: thread, to: chunkCount, by: threads) {
                let start = chunk * chunkSize
                body(scratch[thread], start..<min(start + chunkSize, batch))
            }
        }
        if threads == 1 {
            runThread(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: threads, execute: runThread)
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
            body((count * chunk / chunks)..<(count * (chunk + 1) / chunks))
        }
    }

    // MARK: - im2col

    /// Returns the im2col rows of `samples`: the input itself for a pointwise geometry,
    /// otherwise the workspace's column buffer, filled. Padded positions are zero.
    private func im2col(
        _ input: UnsafePointer<Float>, geometry g: ConvolutionGeometry, samples: Range<Int>, workspace: ThreadScratch
    ) -> UnsafePointer<Float> {
        if g.isPointwise { return input + samples.lowerBound * g.inputHeight * g.inputWidth * g.channels }
        var geometry = g.cGeometry
        nk_im2col(input, &geometry, samples.lowerBound, samples.upperBound, workspace.columns)
        return UnsafePointer(workspace.columns)
    }
}

extension ConvolutionGeometry {
    /// The same sizes in the C kernels' struct.
    var cGeometry: nk_geometry {
        nk_geometry(
            batch: batch, input_height: inputHeight, input_width: inputWidth, channels: channels,
            kernel_height: kernelHeight, kernel_width: kernelWidth, stride_height: strideHeight, stride_width: strideWidth,
            pad_top: padTop, pad_left: padLeft, output_height: outputHeight, output_width: outputWidth)
    }
}

/// One thread's scratch buffers, grown on demand and kept between calls.
final class ThreadScratch {
    private(set) var columns = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var kernelGradient = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var biasGradient = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private(set) var preActivationGradient = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var columnsCapacity = 1
    private var preActivationCapacity = 1
    private var kernelCapacity = 1
    private var biasCapacity = 1
    /// Whether `kernelGradient` and `biasGradient` hold a partial sum of the current backward pass.
    var hasGradient = false

    func reserveColumns(_ count: Int) {
        guard count > columnsCapacity else { return }
        columns.deallocate()
        columns = .allocate(capacity: count)
        columnsCapacity = count
    }

    func reservePreActivationGradient(_ count: Int) {
        guard count > preActivationCapacity else { return }
        preActivationGradient.deallocate()
        preActivationGradient = .allocate(capacity: count)
        preActivationCapacity = count
    }

    func reserveGradients(kernelCount: Int, biasCount: Int) {
        if kernelCount > kernelCapacity {
            kernelGradient.deallocate()
            kernelGradient = .allocate(capacity: kernelCount)
            kernelCapacity = kernelCount
        }
        if biasCount > biasCapacity {
            biasGradient.deallocate()
            biasGradient = .allocate(capacity: biasCount)
            biasCapacity = biasCount
        }
    }

    deinit {
        columns.deallocate()
        kernelGradient.deallocate()
        biasGradient.deallocate()
        preActivationGradient.deallocate()
    }
}

/// Calls single-threaded `cblas_sgemm` in row-major order:
/// `c = alpha * op(a) * op(b) + beta * c`, with `op(a)` of `m x k` and `op(b)` of `k x n`.
func gemm(
    _ a: UnsafePointer<Float>, transposeA: Bool, lda: Int,
    _ b: UnsafePointer<Float>, transposeB: Bool, ldb: Int,
    into c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, alpha: Float, beta: Float
) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        // BLAS skips the product for k = 0; apply beta here so the contract holds.
        for index in 0..<(m * n) { c[index] = beta == 0 ? 0 : beta * c[index] }
        return
    }
    cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(n))
}
