import CNeuralKitKernels
import COpenBLAS
import Dispatch
import Foundation

/// The arithmetic of matrix products, the bulk of a convolution's or dense layer's work.
public enum ComputePrecision: String, Sendable, CaseIterable {
    /// float32 products and sums.
    case float32
    /// bfloat16 products summed in float32, the idea of Keras's `mixed_bfloat16` policy
    /// with less rounding: only the two inputs of each matrix product are rounded to
    /// bfloat16 (8 significant bits), and weights, activations, gradients and optimizer
    /// state stay float32. Needs a CPU with AVX512_BF16, on which products run about
    /// twice as fast.
    case bfloat16
}

/// The code that runs a matrix product.
enum MatrixKernel: Equatable {
    /// OpenBLAS's `cblas_sgemm`, on any CPU.
    case openBLAS
    /// NeuralKit's AVX-512 kernels, float32 or bfloat16.
    case native(ComputePrecision)

    /// Returns the fastest kernel for `precision` on this CPU, or nil when the CPU cannot run it.
    static func best(for precision: ComputePrecision) -> MatrixKernel? {
        switch precision {
        case .float32: return nk_gemm_supported(NK_PRECISION_FLOAT32) != 0 ? .native(.float32) : .openBLAS
        case .bfloat16: return nk_gemm_supported(NK_PRECISION_BFLOAT16) != 0 ? .native(.bfloat16) : nil
        }
    }
}

/// Kernels for the CPU: single-threaded matrix products on cache-sized chunks of the
/// batch, with the chunks spread over `threadCount` threads. Products run on NeuralKit's
/// AVX-512 kernels where the CPU has AVX-512, and on OpenBLAS otherwise.
///
/// A convolution runs im2col, the matrix product, bias and activation on one chunk of
/// samples at a time, so the im2col buffer (about 1 MiB) stays in the core's cache and
/// no batch-sized im2col matrix is ever allocated. Threads take chunks in a fixed
/// round-robin order and sum their kernel gradients in thread order, so results are
/// bit-identical from run to run for the same `threadCount` and CPU.
///
/// Safe to call from several threads at once, as when two models train side by side:
/// each call borrows its own set of scratch buffers from a pool.
public final class CPUBackend: Backend {
    public let threadCount: Int
    /// The arithmetic of matrix products.
    public let precision: ComputePrecision
    let matrixKernel: MatrixKernel

    /// The target size of one chunk's im2col buffer, in floats (1 MiB).
    private let chunkFloats = 1 << 18
    private let scratchPool = NSLock()
    private var idleScratch: [[ThreadScratch]] = []

    /// Creates a float32 backend. OpenBLAS is set to one thread, since the backend runs
    /// its own threads over batch chunks.
    ///
    /// - Parameter threadCount: threads for kernels; default one per active processor.
    public convenience init(threadCount: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.init(threadCount: threadCount, matrixKernel: MatrixKernel.best(for: .float32) ?? .openBLAS)
    }

    /// Creates a backend whose matrix products run in `precision`.
    ///
    /// - Parameters:
    ///   - threadCount: threads for kernels; default one per active processor.
    ///   - precision: `.float32`, or `.bfloat16` on a CPU with AVX512_BF16.
    /// - Throws: `NeuralKitError.invalidArgument` when `threadCount` is below 1 or this
    ///   CPU cannot run `precision`.
    public convenience init(
        threadCount: Int = ProcessInfo.processInfo.activeProcessorCount, precision: ComputePrecision
    ) throws(NeuralKitError) {
        guard threadCount >= 1 else {
            throw .invalidArgument("CPUBackend: threadCount must be at least 1, got \(threadCount)")
        }
        guard let kernel = MatrixKernel.best(for: precision) else {
            throw .invalidArgument(
                "precision \(precision.rawValue) needs a CPU with AVX-512 (F, BW and VL) and AVX512_BF16, and this CPU "
                    + "lacks at least one of them; use .float32")
        }
        self.init(threadCount: threadCount, matrixKernel: kernel)
    }

    /// Creates a backend on a given matrix kernel, for tests that compare kernels.
    init(threadCount: Int, matrixKernel: MatrixKernel) {
        checkPrecondition(threadCount >= 1, "threadCount must be at least 1, got \(threadCount)")
        self.threadCount = threadCount
        self.matrixKernel = matrixKernel
        switch matrixKernel {
        case .openBLAS: precision = .float32
        case .native(let precision): self.precision = precision
        }
        openblas_set_num_threads(1)
    }

    /// Returns whether this CPU can run matrix products in `precision`.
    public static func supports(_ precision: ComputePrecision) -> Bool {
        MatrixKernel.best(for: precision) != nil
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
                matrixKernel, aBlock, transposeA: transposeA, lda: transposeA ? m : k, b, transposeB: transposeB, ldb: transposeB ? k : n,
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
            forEachChunk(
                batch: g.batch, columnsPerSample: positions * patchSize, outputsPerSample: positions * filters, scratch: scratch
            ) { workspace, samples in
                let firstRow = samples.lowerBound * positions
                let rows = samples.count * positions
                let columns = im2col(input, geometry: g, samples: samples, workspace: workspace)
                let outputChunk = output + firstRow * filters
                if case .native(let precision) = matrixKernel, activation == .relu || activation == .linear, logits == nil {
                    // Bias and ReLU applied while each tile is in registers: one pass over the output.
                    let status = nk_gemm_bias_relu(
                        precision.cPrecision, rows, filters, patchSize, columns, kernel, bias,
                        activation == .relu ? 1 : 0, outputChunk)
                    checkPrecondition(status == 0, outOfPackingMemory)
                    return
                }
                gemm(
                    matrixKernel, columns, transposeA: false, lda: patchSize, kernel, transposeB: false, ldb: filters,
                    into: outputChunk, m: rows, n: filters, k: patchSize, alpha: 1, beta: 0)
                let isReLU = activation == .relu
                nk_add_bias_relu(outputChunk, rows, filters, bias, logits.map { $0 + firstRow * filters }, isReLU ? 1 : 0)
                if !isReLU {
                    for row in 0..<rows { activate(outputChunk + row * filters, count: filters, activation: activation) }
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

            forEachChunk(
                batch: g.batch, columnsPerSample: positions * patchSize, outputsPerSample: positions * filters, scratch: scratch
            ) { workspace, samples in
                let firstRow = samples.lowerBound * positions
                let rows = samples.count * positions
                // The pre-activation gradient of a chunk lives only in the thread's scratch.
                // Kernel and bias gradients: this thread's chunks add into its own partial sums.
                workspace.reservePreActivationGradient(rows * filters)
                let gradientChunk = workspace.preActivationGradient
                if !workspace.hasGradient { workspace.biasGradient.update(repeating: 0, count: filters) }
                let chunkGradient = outputGradient + firstRow * filters
                let chunkOutput = output + firstRow * filters
                if activation == .relu || activation == .linear {
                    nk_relu_backward(
                        chunkGradient, chunkOutput, gradientChunk, rows, filters, activation == .relu ? 1 : 0,
                        workspace.biasGradient)
                } else {
                    activationBackward(
                        chunkGradient, output: chunkOutput, into: gradientChunk, rows: rows, columns: filters,
                        activation: activation)
                    nk_relu_backward(gradientChunk, gradientChunk, gradientChunk, rows, filters, 0, workspace.biasGradient)
                }

                let columns = im2col(input, geometry: g, samples: samples, workspace: workspace)
                let beta: Float = workspace.hasGradient ? 1 : 0
                gemm(
                    matrixKernel, columns, transposeA: true, lda: patchSize, gradientChunk, transposeB: false, ldb: filters,
                    into: workspace.kernelGradient, m: patchSize, n: filters, k: rows, alpha: 1, beta: beta)
                workspace.hasGradient = true

                guard let inputGradient else { return }
                let sampleSize = g.inputHeight * g.inputWidth * g.channels
                if g.isPointwise {
                    gemm(
                        matrixKernel, gradientChunk, transposeA: false, lda: filters, kernel, transposeB: true, ldb: filters,
                        into: inputGradient + samples.lowerBound * sampleSize, m: rows, n: patchSize, k: filters, alpha: 1, beta: 0)
                } else {
                    gemm(
                        matrixKernel, gradientChunk, transposeA: false, lda: filters, kernel, transposeB: true, ldb: filters,
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

    /// Splits `batch` samples into chunks whose im2col rows and outputs take about
    /// `chunkFloats` floats, a multiple of `threadCount` chunks in all, and runs `body` on
    /// each. Thread `t` takes chunks `t`, `t + threadCount`, ... in order.
    private func forEachChunk(
        batch: Int, columnsPerSample: Int, outputsPerSample: Int, scratch: [ThreadScratch],
        _ body: (ThreadScratch, Range<Int>) -> Void
    ) {
        guard batch > 0 else { return }
        let samplesPerTarget = max(1, chunkFloats / max(columnsPerSample + outputsPerSample, 1))
        var chunkCount = (batch + samplesPerTarget - 1) / samplesPerTarget
        chunkCount = min(batch, (chunkCount + threadCount - 1) / threadCount * threadCount)
        let chunkSize = (batch + chunkCount - 1) / chunkCount
        chunkCount = (batch + chunkSize - 1) / chunkSize
        for workspace in scratch { workspace.reserveColumns(chunkSize * columnsPerSample) }

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

let outOfPackingMemory =
    "out of memory for the matrix product's packing buffers (about 800 KB per thread); free memory or use fewer threads"

extension ComputePrecision {
    /// The same precision in the C kernels' enum.
    var cPrecision: nk_precision { self == .bfloat16 ? NK_PRECISION_BFLOAT16 : NK_PRECISION_FLOAT32 }
}

/// Computes a single-threaded row-major product with `kernel`:
/// `c = alpha * op(a) * op(b) + beta * c`, with `op(a)` of `m x k` and `op(b)` of `k x n`.
func gemm(
    _ kernel: MatrixKernel, _ a: UnsafePointer<Float>, transposeA: Bool, lda: Int,
    _ b: UnsafePointer<Float>, transposeB: Bool, ldb: Int,
    into c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int, alpha: Float, beta: Float
) {
    guard m > 0, n > 0 else { return }
    switch kernel {
    case .native(let precision):
        let status = nk_gemm(
            precision.cPrecision, transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, n)
        checkPrecondition(status == 0, outOfPackingMemory)
    case .openBLAS:
        guard k > 0 else {
            // BLAS skips the product for k = 0; apply beta here so the contract holds.
            for index in 0..<(m * n) { c[index] = beta == 0 ? 0 : beta * c[index] }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(n))
    }
}
