import CNeuralKitKernels
import Testing

@testable import NeuralKit

private let float32Supported = nk_gemm_supported(NK_PRECISION_FLOAT32) != 0
private let bfloat16Supported = nk_gemm_supported(NK_PRECISION_BFLOAT16) != 0
private let float32Requirement: Comment = "the native float32 kernel needs AVX-512F, which this CPU lacks"
private let bfloat16Requirement: Comment = "the native bfloat16 kernel needs AVX-512F and AVX512_BF16, which this CPU lacks"

/// The native precisions this CPU runs.
private let nativePrecisions = ComputePrecision.allCases.filter { precision in
    precision == .bfloat16 ? bfloat16Supported : float32Supported
}

/// OpenBLAS and every native kernel this CPU runs.
private let availableKernels = [MatrixKernel.openBLAS] + nativePrecisions.map { MatrixKernel.native($0) }

/// (m, n, k) around the block sizes of gemm.c: tiles of 12 x 32, depth blocks of at most
/// 320 (k is split into equal blocks), and 120 rows of op(a) and 512 columns of op(b)
/// packed at once.
private let productShapes: [(m: Int, n: Int, k: Int)] = [
    (1, 1, 1), (1, 33, 13), (13, 1, 31), (2, 11, 1), (12, 32, 12), (11, 31, 33), (31, 12, 257), (33, 2, 600),
    (5, 40, 321), (14, 33, 961),
    (2, 513, 11), (127, 13, 32), (300, 31, 2), (121, 33, 127), (32, 600, 300), (125, 530, 260),
]

/// An alpha that is neither 1 nor a bfloat16 value, so a kernel that drops or rounds it fails.
private let alpha: Float = -0.7

/// Betas that skip, keep, halve and scale c by a value that bfloat16 cannot represent.
private let betas: [Float] = [0, 1, 0.5, 0.3]

/// Returns the allowed error of a float32 product of depth k, as a fraction of the
/// element's sum of |terms|. A float32 sum of k terms errs by at most about k * 2^-24 of
/// that sum (the standard worst-case bound for recursive summation), and alpha and beta
/// add a rounding each. Twice that bound still fails a lost or doubled term, which moves
/// an element by about 1/k of the sum. bfloat16 inputs multiply exactly in float32
/// (8-bit significands give 16-bit products), so the bound holds for them too.
private func productTolerance(depth k: Int) -> Double {
    2 * Double(k + 3) * 0x1p-24
}

/// Rounds `value` to the nearest bfloat16 with ties to even, returned as a Float. NaN stays NaN.
/// NOTE: the kernel's AVX512_BF16 instructions treat subnormal inputs and products as zero,
/// and this helper keeps them, so the tests draw no values small enough to differ.
private func roundedToBFloat16(_ value: Float) -> Float {
    if value.isNaN { return value }
    let bits = value.bitPattern
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return Float(bitPattern: rounded & 0xFFFF_0000)
}

/// Returns the rounding that `kernel` applies to its inputs.
private func inputRounding(of kernel: MatrixKernel) -> (Float) -> Float {
    if kernel == .native(.bfloat16) { return roundedToBFloat16 }
    return { $0 }
}

private func cPrecision(_ precision: ComputePrecision) -> nk_precision {
    precision == .bfloat16 ? NK_PRECISION_BFLOAT16 : NK_PRECISION_FLOAT32
}

private func randomValues(count: Int, generator: inout SeededGenerator) -> [Float] {
    (0..<count).map { _ in 2 * generator.nextUnitFloat() - 1 }
}

/// The stored operands of one product op(a) * op(b). Every stored row has `padding` extra
/// NaN values, and one NaN row follows the last, so a kernel that reads past a row or past
/// the matrix produces NaN.
private struct Operands {
    let m: Int, n: Int, k: Int
    let transposeA: Bool, transposeB: Bool
    let lda: Int, ldb: Int
    var a: [Float]
    var b: [Float]

    /// Creates operands of uniform values in [-1, 1).
    init(
        m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, padding: Int = 0,
        generator: inout SeededGenerator
    ) {
        let opA = randomValues(count: m * k, generator: &generator)
        let opB = randomValues(count: k * n, generator: &generator)
        self.init(opA: opA, opB: opB, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, padding: padding)
    }

    /// Creates operands that store the row-major m x k `opA` and k x n `opB`.
    init(opA: [Float], opB: [Float], m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, padding: Int = 0) {
        (self.m, self.n, self.k) = (m, n, k)
        (self.transposeA, self.transposeB) = (transposeA, transposeB)
        lda = (transposeA ? m : k) + padding
        ldb = (transposeB ? k : n) + padding
        a = Operands.stored(opA, rows: m, columns: k, transposed: transposeA, leadingDimension: lda)
        b = Operands.stored(opB, rows: k, columns: n, transposed: transposeB, leadingDimension: ldb)
    }

    /// Returns the storage of the row-major `rows x columns` matrix `values`, or of its
    /// transpose, with `leadingDimension` values per stored row.
    private static func stored(
        _ values: [Float], rows: Int, columns: Int, transposed: Bool, leadingDimension: Int
    ) -> [Float] {
        let storedRows = transposed ? columns : rows
        var storage = [Float](repeating: .nan, count: max((storedRows + 1) * leadingDimension, 1))
        for row in 0..<rows {
            for column in 0..<columns {
                let offset = transposed ? column * leadingDimension + row : row * leadingDimension + column
                storage[offset] = values[row * columns + column]
            }
        }
        return storage
    }

    /// op(a)[i, p].
    func elementA(_ i: Int, _ p: Int) -> Float { transposeA ? a[p * lda + i] : a[i * lda + p] }

    /// op(b)[p, j].
    func elementB(_ p: Int, _ j: Int) -> Float { transposeB ? b[j * ldb + p] : b[p * ldb + j] }

    var description: String { "m \(m), n \(n), k \(k), transposeA \(transposeA), transposeB \(transposeB)" }
}

/// The product op(a) * op(b) summed in Double after `rounding` maps each input, and per
/// element the sum of |op(a)[i, p] * op(b)[p, j]|, the scale of float32 rounding error.
private struct ReferenceProduct {
    var values: [Double]
    var magnitudes: [Double]

    init(_ operands: Operands, rounding: (Float) -> Float = { $0 }) {
        let (m, n, k) = (operands.m, operands.n, operands.k)
        var rowsA = [Double](repeating: 0, count: m * k)
        var columnsB = [Double](repeating: 0, count: n * k)
        for i in 0..<m {
            for p in 0..<k { rowsA[i * k + p] = Double(rounding(operands.elementA(i, p))) }
        }
        for j in 0..<n {
            for p in 0..<k { columnsB[j * k + p] = Double(rounding(operands.elementB(p, j))) }
        }

        values = [Double](repeating: 0, count: m * n)
        magnitudes = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                var magnitude = 0.0
                for p in 0..<k {
                    let term = rowsA[i * k + p] * columnsB[j * k + p]
                    sum += term
                    magnitude += abs(term)
                }
                values[i * n + j] = sum
                magnitudes[i * n + j] = magnitude
            }
        }
    }
}

/// Returns the largest |actual - expected| / magnitude and its index. NaN in `actual`
/// counts as infinitely far, and so does any difference where the magnitude is 0.
private func worstScaledError(
    _ actual: [Float], expected: [Double], magnitudes: [Double]
) -> (ratio: Double, index: Int) {
    var worst = (ratio: 0.0, index: 0)
    for index in actual.indices {
        let difference = abs(Double(actual[index]) - expected[index])
        let ratio: Double
        if difference.isNaN {
            ratio = .infinity
        } else if difference == 0 {
            ratio = 0
        } else {
            ratio = magnitudes[index] > 0 ? difference / magnitudes[index] : .infinity
        }
        if ratio > worst.ratio { worst = (ratio, index) }
    }
    return worst
}

/// Expects `c` to equal `alpha * reference + beta * initial` within `tolerance` times each
/// element's magnitude, `|alpha| * sum |a||b| + |beta * initial|`. With beta 0, `initial`
/// is ignored, as BLAS does.
private func expectProduct(
    _ c: [Float], equals reference: ReferenceProduct, alpha: Float, beta: Float, initial: [Float],
    tolerance: Double, _ context: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    var expected = [Double](repeating: 0, count: c.count)
    var magnitudes = [Double](repeating: 0, count: c.count)
    for index in c.indices {
        let cTerm = beta == 0 ? 0 : Double(beta) * Double(initial[index])
        expected[index] = Double(alpha) * reference.values[index] + cTerm
        magnitudes[index] = abs(Double(alpha)) * reference.magnitudes[index] + abs(cTerm)
    }
    let worst = worstScaledError(c, expected: expected, magnitudes: magnitudes)
    #expect(
        worst.ratio <= tolerance,
        """
        \(context): element \(worst.index) is \(c[worst.index]), expected \(expected[worst.index]); \
        error \(worst.ratio) of its magnitude \(magnitudes[worst.index]) exceeds \(tolerance)
        """,
        sourceLocation: sourceLocation)
}

/// Fills about 16 KiB of stack below the caller with all-ones bytes, a NaN in float32 and
/// in bfloat16, so that a kernel called next reads NaN from any stack memory it never
/// wrote. Each level takes 1 KiB, the largest temporary allocation that the Swift 6.3
/// standard library always places on the stack.
@inline(never)
private func fillStackWithNaN(levels: Int = 16) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { buffer in
        buffer.initialize(repeating: Float(bitPattern: 0xFFFF_FFFF))
        // An opaque C call reads the buffer, so the optimizer keeps the stores.
        nk_multiply(buffer.baseAddress, buffer.baseAddress, buffer.baseAddress, 0, buffer.count)
        if levels > 1 { fillStackWithNaN(levels: levels - 1) }
    }
}

/// Runs the Swift `gemm` with `kernel` on `operands`, updating the m x n matrix `c`.
private func multiply(_ kernel: MatrixKernel, _ operands: Operands, into c: inout [Float], alpha: Float, beta: Float) {
    operands.a.withUnsafeBufferPointer { a in
        operands.b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                gemm(
                    kernel, a.baseAddress!, transposeA: operands.transposeA, lda: operands.lda,
                    b.baseAddress!, transposeB: operands.transposeB, ldb: operands.ldb,
                    into: c.baseAddress!, m: operands.m, n: operands.n, k: operands.k, alpha: alpha, beta: beta)
            }
        }
    }
}

@Suite struct MatrixKernelTests {
    // MARK: - Products against Double references

    @Test(.enabled(if: float32Supported, float32Requirement), arguments: [false, true], [false, true])
    func float32MatchesDoubleReference(transposeA: Bool, transposeB: Bool) {
        var generator = SeededGenerator(seed: 11)
        for shape in productShapes {
            let operands = Operands(
                m: shape.m, n: shape.n, k: shape.k, transposeA: transposeA, transposeB: transposeB,
                generator: &generator)
            let reference = ReferenceProduct(operands)
            let initial = randomValues(count: shape.m * shape.n, generator: &generator)
            for beta in betas {
                var c = initial
                multiply(.native(.float32), operands, into: &c, alpha: alpha, beta: beta)
                expectProduct(
                    c, equals: reference, alpha: alpha, beta: beta, initial: initial,
                    tolerance: productTolerance(depth: shape.k), "\(operands.description), beta \(beta)")
            }
        }
    }

    @Test(.enabled(if: bfloat16Supported, bfloat16Requirement), arguments: [false, true], [false, true])
    func bfloat16MatchesRoundedReference(transposeA: Bool, transposeB: Bool) {
        var generator = SeededGenerator(seed: 12)
        for shape in productShapes {
            let operands = Operands(
                m: shape.m, n: shape.n, k: shape.k, transposeA: transposeA, transposeB: transposeB,
                generator: &generator)
            let reference = ReferenceProduct(operands, rounding: roundedToBFloat16)
            let initial = randomValues(count: shape.m * shape.n, generator: &generator)
            for beta in betas {
                var c = initial
                multiply(.native(.bfloat16), operands, into: &c, alpha: alpha, beta: beta)
                expectProduct(
                    c, equals: reference, alpha: alpha, beta: beta, initial: initial,
                    tolerance: productTolerance(depth: shape.k), "\(operands.description), beta \(beta)")
            }
        }
    }

    // MARK: - bfloat16 rounding

    /// Multiplies by an identity matrix, so each element of c is one input rounded to
    /// bfloat16, exactly. The 19 inputs per row cover both of the kernel's conversions:
    /// 16 at a time and one at a time for the rest.
    @Test(.enabled(if: bfloat16Supported, bfloat16Requirement), arguments: [false, true], [false, true])
    func bfloat16RoundsInputsToNearestEven(transposeA: Bool, transposeB: Bool) {
        // Each input with its bfloat16 value, which keeps 8 significant bits.
        let cases: [(input: Float, rounded: Float)] = [
            (1 + 0x1p-10, 1),
            (1 + 0x1p-8, 1),  // a tie, to the even 1
            (-(1 + 0x1p-8), -1),
            (1 + 3 * 0x1p-8, 1 + 0x1p-6),  // a tie, to the even 1 + 2^-6
            (-(1 + 3 * 0x1p-8), -(1 + 0x1p-6)),
            (1 + 0x1p-8 - 0x1p-23, 1),  // just below a tie
            (1 + 0x1p-8 + 0x1p-23, 1 + 0x1p-7),  // just above a tie
            (255.5, 256),  // a tie between 255 and 256
            (254.5, 254),  // a tie between 254 and 255
            (0.1, 0.100_097_656_25),
            (-7.3, -7.3125),
            (3e38, 226 * 0x1p120),
            (3, 3),
        ]
        var generator = SeededGenerator(seed: 13)
        let count = 19
        let randomInputs = randomValues(count: 2 * count - cases.count, generator: &generator)
        let inputs = cases.map(\.input) + randomInputs
        let expected = cases.map(\.rounded) + randomInputs.map(roundedToBFloat16)
        var identity = [Float](repeating: 0, count: count * count)
        for index in 0..<count { identity[index * count + index] = 1 }

        // op(a) contains the inputs as 2 x 19, and op(b) is the identity.
        let roundedA = Operands(
            opA: inputs, opB: identity, m: 2, n: count, k: count, transposeA: transposeA, transposeB: transposeB)
        var c = [Float](repeating: 0, count: 2 * count)
        multiply(.native(.bfloat16), roundedA, into: &c, alpha: 1, beta: 0)
        for index in c.indices {
            #expect(c[index] == expected[index], "a input \(inputs[index]) at \(index), \(roundedA.description)")
        }

        // op(a) is the identity, and op(b) contains the inputs as 19 x 2, the transpose of the above.
        var inputsB = [Float](repeating: 0, count: 2 * count)
        for row in 0..<2 {
            for column in 0..<count { inputsB[column * 2 + row] = inputs[row * count + column] }
        }
        let roundedB = Operands(
            opA: identity, opB: inputsB, m: count, n: 2, k: count, transposeA: transposeA, transposeB: transposeB)
        multiply(.native(.bfloat16), roundedB, into: &c, alpha: 1, beta: 0)
        for row in 0..<2 {
            for column in 0..<count {
                let index = row * count + column
                #expect(
                    c[column * 2 + row] == expected[index], "b input \(inputs[index]) at \(index), \(roundedB.description)")
            }
        }
    }

    /// 1 + 2^-10 is 1 in bfloat16, so the bfloat16 kernel must lose what float32 keeps.
    @Test(.enabled(if: bfloat16Supported, bfloat16Requirement), arguments: [false, true], [false, true])
    func bfloat16DiffersFromFloat32Product(transposeA: Bool, transposeB: Bool) {
        for (m, n, k) in [(1, 1, 1), (3, 2, 5)] {
            let operands = Operands(
                opA: [Float](repeating: 1 + 0x1p-10, count: m * k), opB: [Float](repeating: 1, count: k * n),
                m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
            var bfloat16Result = [Float](repeating: 0, count: m * n)
            var float32Result = [Float](repeating: 0, count: m * n)
            multiply(.native(.bfloat16), operands, into: &bfloat16Result, alpha: 1, beta: 0)
            multiply(.native(.float32), operands, into: &float32Result, alpha: 1, beta: 0)
            #expect(bfloat16Result == [Float](repeating: Float(k), count: m * n), "\(operands.description)")
            #expect(
                float32Result == [Float](repeating: Float(k) * (1 + 0x1p-10), count: m * n), "\(operands.description)")
        }
    }

    /// The bfloat16 kernel multiplies pairs of depth steps, so an odd k leaves a half pair
    /// that it must fill with zero. NaN after every stored row and matrix fails a kernel that
    /// reads the missing step instead.
    @Test(.enabled(if: bfloat16Supported, bfloat16Requirement), arguments: [1, 3, 255, 257])
    func bfloat16OddDepthPadsPairs(k: Int) {
        var generator = SeededGenerator(seed: 14)
        for (transposeA, transposeB) in [(false, false), (false, true), (true, false), (true, true)] {
            let operands = Operands(
                m: 13, n: 35, k: k, transposeA: transposeA, transposeB: transposeB, padding: 1, generator: &generator)
            let reference = ReferenceProduct(operands, rounding: roundedToBFloat16)
            var c = [Float](repeating: 0, count: 13 * 35)
            multiply(.native(.bfloat16), operands, into: &c, alpha: alpha, beta: 0)
            #expect(!c.contains { $0.isNaN }, "\(operands.description)")
            expectProduct(
                c, equals: reference, alpha: alpha, beta: 0, initial: c, tolerance: productTolerance(depth: k),
                operands.description)
        }
    }

    /// As bfloat16OddDepthPadsPairs, with the stack below the caller filled with a bfloat16
    /// NaN pattern first, so a half pair that the kernel leaves unwritten on the stack turns
    /// the product into NaN.
    @Test(.enabled(if: bfloat16Supported, bfloat16Requirement), arguments: [1, 3, 5, 257])
    func bfloat16OddDepthIgnoresStaleStack(k: Int) {
        var generator = SeededGenerator(seed: 20)
        for (transposeA, transposeB) in [(false, false), (false, true), (true, false), (true, true)] {
            let operands = Operands(m: 3, n: 32, k: k, transposeA: transposeA, transposeB: transposeB, generator: &generator)
            let reference = ReferenceProduct(operands, rounding: roundedToBFloat16)
            var c = [Float](repeating: 0, count: 3 * 32)
            fillStackWithNaN()
            multiply(.native(.bfloat16), operands, into: &c, alpha: 1, beta: 0)
            #expect(c.filter(\.isNaN).count == 0, "\(operands.description)")
            expectProduct(
                c, equals: reference, alpha: 1, beta: 0, initial: c, tolerance: productTolerance(depth: k),
                operands.description)
        }
    }

    // MARK: - beta and k = 0

    @Test func zeroBetaOverwritesNaN() {
        var generator = SeededGenerator(seed: 15)
        for kernel in availableKernels {
            for (m, n, k) in [(13, 37, 19), (5, 40, 300)] {
                let operands = Operands(m: m, n: n, k: k, transposeA: false, transposeB: true, generator: &generator)
                let reference = ReferenceProduct(operands, rounding: inputRounding(of: kernel))
                let initial = [Float](repeating: .nan, count: m * n)
                var c = initial
                multiply(kernel, operands, into: &c, alpha: 1.5, beta: 0)
                #expect(c.filter(\.isNaN).count == 0, "\(kernel), \(operands.description)")
                expectProduct(
                    c, equals: reference, alpha: 1.5, beta: 0, initial: initial, tolerance: productTolerance(depth: k),
                    "\(kernel), \(operands.description)")
            }
        }
    }

    @Test func zeroDepthScalesByBeta() {
        var generator = SeededGenerator(seed: 16)
        let (m, n) = (5, 37)
        var initial = randomValues(count: m * n, generator: &generator)
        initial[3] = .nan
        initial[40] = .nan
        for kernel in availableKernels {
            for (transposeA, transposeB) in [(false, false), (true, true)] {
                let operands = Operands(
                    m: m, n: n, k: 0, transposeA: transposeA, transposeB: transposeB, generator: &generator)

                var c = initial
                multiply(kernel, operands, into: &c, alpha: 2, beta: 0)
                #expect(c == [Float](repeating: 0, count: m * n), "beta 0, \(kernel), \(operands.description)")

                for beta: Float in [1, 0.5] {
                    c = initial
                    multiply(kernel, operands, into: &c, alpha: 2, beta: beta)
                    let mismatches = c.indices.filter { index in
                        let expected = beta * initial[index]
                        return expected.isNaN ? !c[index].isNaN : c[index] != expected
                    }
                    #expect(mismatches.isEmpty, "beta \(beta), \(kernel), \(operands.description): indices \(mismatches)")
                }
            }
        }
    }

    // MARK: - Leading dimensions

    /// Calls nk_gemm directly, because the Swift `gemm` always passes ldc = n. Padding in a
    /// and b is NaN, and padding in c is a sentinel that the kernel must not overwrite.
    @Test(.enabled(if: float32Supported, float32Requirement), arguments: [false, true], [false, true])
    func leadingDimensionsKeepPadding(transposeA: Bool, transposeB: Bool) {
        let sentinel: Float = -1234.5
        var generator = SeededGenerator(seed: 17)
        for precision in nativePrecisions {
            for (m, n, k) in [(13, 35, 19), (7, 530, 260), (125, 3, 5)] {
                let operands = Operands(
                    m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, padding: 3, generator: &generator)
                let reference = ReferenceProduct(
                    operands, rounding: inputRounding(of: .native(precision)))
                let initial = randomValues(count: m * n, generator: &generator)
                let ldc = n + 4
                // One sentinel row after the last catches writes past the matrix.
                var storedC = [Float](repeating: sentinel, count: (m + 1) * ldc)
                for i in 0..<m {
                    for j in 0..<n { storedC[i * ldc + j] = initial[i * n + j] }
                }

                let status = operands.a.withUnsafeBufferPointer { a in
                    operands.b.withUnsafeBufferPointer { b in
                        storedC.withUnsafeMutableBufferPointer { c in
                            nk_gemm(
                                cPrecision(precision), transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha,
                                a.baseAddress, operands.lda, b.baseAddress, operands.ldb, 0.5, c.baseAddress, ldc)
                        }
                    }
                }
                #expect(status == 0, "nk_gemm failed, \(precision), \(operands.description)")

                let context = "\(precision), \(operands.description), lda \(operands.lda), ldb \(operands.ldb), ldc \(ldc)"
                let overwritten = storedC.indices.filter { index in
                    (index / ldc >= m || index % ldc >= n) && storedC[index].bitPattern != sentinel.bitPattern
                }
                #expect(overwritten.isEmpty, "\(context): padding of c overwritten at \(overwritten.prefix(10))")

                var c = [Float](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n { c[i * n + j] = storedC[i * ldc + j] }
                }
                expectProduct(
                    c, equals: reference, alpha: alpha, beta: 0.5, initial: initial,
                    tolerance: productTolerance(depth: k), context)
            }
        }
    }

    // MARK: - Determinism

    @Test(.enabled(if: float32Supported, float32Requirement), arguments: [false, true], [false, true])
    func repeatedCallIsBitIdentical(transposeA: Bool, transposeB: Bool) {
        var generator = SeededGenerator(seed: 18)
        let operands = Operands(
            m: 125, n: 530, k: 260, transposeA: transposeA, transposeB: transposeB, generator: &generator)
        let initial = randomValues(count: 125 * 530, generator: &generator)
        for precision in nativePrecisions {
            var first = initial
            var second = initial
            multiply(.native(precision), operands, into: &first, alpha: alpha, beta: 0.5)
            multiply(.native(precision), operands, into: &second, alpha: alpha, beta: 0.5)
            let differing = first.indices.filter { first[$0].bitPattern != second[$0].bitPattern }
            #expect(differing.isEmpty, "\(precision), \(operands.description): \(differing.count) elements differ")
        }
    }

    // MARK: - CPUBackend on the native kernel

    /// Runs the same convolutions, forward and backward, on OpenBLAS and on the native
    /// float32 kernel. The two may differ by twice productTolerance of the longest sum (once
    /// for each kernel's rounding), times each result's magnitude: the same convolution
    /// on |inputs| through OpenBLAS.
    @Test(.enabled(if: float32Supported, float32Requirement))
    func nativeConvolutionMatchesOpenBLAS() {
        let cases: [(name: String, geometry: ConvolutionGeometry, filters: Int)] = [
            (
                "3x3 same, stride 1",
                ConvolutionGeometry(
                    batch: 3, inputHeight: 9, inputWidth: 7, channels: 5, kernelSize: (3, 3), strides: (1, 1),
                    padding: .same), 7
            ),
            (
                "5x4 same, stride 2",
                ConvolutionGeometry(
                    batch: 2, inputHeight: 13, inputWidth: 11, channels: 3, kernelSize: (5, 4), strides: (2, 2),
                    padding: .same), 17
            ),
            (
                "3x2 valid, strides 2 and 1",
                ConvolutionGeometry(
                    batch: 4, inputHeight: 11, inputWidth: 8, channels: 6, kernelSize: (3, 2), strides: (2, 1),
                    padding: .valid), 33
            ),
            // A patch of 288 values spans two depth blocks, and 6 samples of 256 positions
            // span more than one chunk of the backend's im2col buffer.
            (
                "3x3 same, 32 channels",
                ConvolutionGeometry(
                    batch: 6, inputHeight: 16, inputWidth: 16, channels: 32, kernelSize: (3, 3), strides: (1, 1),
                    padding: .same), 16
            ),
            ("dense", .pointwise(rows: 45, inputUnits: 37), 13),
        ]
        let reference = CPUBackend(threadCount: 2, matrixKernel: .openBLAS)
        let native = CPUBackend(threadCount: 2, matrixKernel: .native(.float32))
        var generator = SeededGenerator(seed: 19)

        for (name, geometry, filters) in cases {
            let outputCount = geometry.outputPositions * filters
            let input = randomValues(count: geometry.inputCount, generator: &generator)
            let kernel = randomValues(count: geometry.patchSize * filters, generator: &generator)
            let bias = randomValues(count: filters, generator: &generator)
            let outputGradient = randomValues(count: outputCount, generator: &generator)

            let expected = runConvolution(
                reference, geometry, filters: filters, input: input, kernel: kernel, bias: bias,
                outputGradient: outputGradient, activation: .tanh)
            let actual = runConvolution(
                native, geometry, filters: filters, input: input, kernel: kernel, bias: bias,
                outputGradient: outputGradient, activation: .tanh, backwardOutput: expected.output)
            // The linear convolution of absolute values gives each result's sum of |terms|.
            // The derivative of tanh is at most 1, so |outputGradient| bounds the gradient
            // before the activation.
            let magnitude = runConvolution(
                reference, geometry, filters: filters, input: input.map(abs), kernel: kernel.map(abs),
                bias: bias.map(abs), outputGradient: outputGradient.map(abs), activation: .linear)

            let longestSum = max(
                geometry.patchSize + 1, geometry.outputPositions + native.threadCount,
                filters * geometry.kernelHeight * geometry.kernelWidth)
            let tolerance = 2 * productTolerance(depth: longestSum)
            let results: [(String, [Float], [Float], [Float])] = [
                ("logits", actual.logits, expected.logits, magnitude.logits),
                ("output", actual.output, expected.output, magnitude.logits),
                ("kernel gradient", actual.kernelGradient, expected.kernelGradient, magnitude.kernelGradient),
                ("bias gradient", actual.biasGradient, expected.biasGradient, magnitude.biasGradient),
                ("input gradient", actual.inputGradient, expected.inputGradient, magnitude.inputGradient),
            ]
            for (result, actualValues, expectedValues, magnitudes) in results {
                let worst = worstScaledError(
                    actualValues, expected: expectedValues.map(Double.init), magnitudes: magnitudes.map(Double.init))
                #expect(
                    worst.ratio <= tolerance,
                    """
                    \(name), \(result): element \(worst.index) is \(actualValues[worst.index]) on the native kernel \
                    and \(expectedValues[worst.index]) on OpenBLAS; difference \(worst.ratio) of its magnitude \
                    exceeds \(tolerance)
                    """)
            }
        }
    }

    // MARK: - Precision selection

    @Test func supportsAgreesWithCPUFeatures() {
        #expect(CPUBackend.supports(.float32))
        #expect(CPUBackend.supports(.bfloat16) == bfloat16Supported)
        let bestFloat32: MatrixKernel = float32Supported ? .native(.float32) : .openBLAS
        #expect(MatrixKernel.best(for: .float32) == bestFloat32)
    }

    @Test func float32BackendUsesBestKernel() throws {
        let backend = try CPUBackend(threadCount: 1, precision: .float32)
        #expect(backend.precision == .float32)
        let bestFloat32: MatrixKernel = float32Supported ? .native(.float32) : .openBLAS
        #expect(backend.matrixKernel == bestFloat32)
    }

    @Test(.enabled(if: bfloat16Supported, bfloat16Requirement))
    func bfloat16BackendCreatedWhenSupported() throws {
        let backend = try CPUBackend(threadCount: 1, precision: .bfloat16)
        #expect(backend.precision == .bfloat16)
        #expect(backend.matrixKernel == .native(.bfloat16))
    }

    @Test(.disabled(if: bfloat16Supported, "this CPU has AVX512_BF16, so a bfloat16 backend is created"))
    func bfloat16BackendRejectedWhenUnsupported() {
        do {
            let backend = try CPUBackend(threadCount: 1, precision: .bfloat16)
            Issue.record("created a backend of precision \(backend.precision) on a CPU without AVX512_BF16")
        } catch {
            guard case .invalidArgument(let message) = error else {
                Issue.record("expected invalidArgument, got \(error)")
                return
            }
            #expect(message.contains("AVX512_BF16"), "\(message)")
        }
    }

    @Test(arguments: [0, -1])
    func backendRejectsThreadCountBelowOne(threadCount: Int) {
        do {
            let backend = try CPUBackend(threadCount: threadCount, precision: .float32)
            Issue.record("created a backend with \(backend.threadCount) threads")
        } catch {
            guard case .invalidArgument(let message) = error else {
                Issue.record("expected invalidArgument, got \(error)")
                return
            }
            #expect(message == "CPUBackend: threadCount must be at least 1, got \(threadCount)")
        }
    }
}

/// The outputs and gradients of one convolution.
private struct ConvolutionResult {
    var output: [Float]
    var logits: [Float]
    var kernelGradient: [Float]
    var biasGradient: [Float]
    var inputGradient: [Float]
}

/// Runs a convolution forward and backward on `backend`. The backward pass takes its
/// activation derivative from `backwardOutput`, or from this forward output when nil, so
/// that two backends can be given the same one.
private func runConvolution(
    _ backend: CPUBackend, _ geometry: ConvolutionGeometry, filters: Int, input: [Float], kernel: [Float],
    bias: [Float], outputGradient: [Float], activation: Activation, backwardOutput: [Float]? = nil
) -> ConvolutionResult {
    let outputCount = geometry.outputPositions * filters
    var result = ConvolutionResult(
        output: [Float](repeating: 0, count: outputCount), logits: [Float](repeating: 0, count: outputCount),
        kernelGradient: [Float](repeating: 0, count: kernel.count), biasGradient: [Float](repeating: 0, count: filters),
        inputGradient: [Float](repeating: 0, count: input.count))

    input.withUnsafeBufferPointer { input in
        kernel.withUnsafeBufferPointer { kernel in
            bias.withUnsafeBufferPointer { bias in
                result.output.withUnsafeMutableBufferPointer { output in
                    result.logits.withUnsafeMutableBufferPointer { logits in
                        backend.convolutionForward(
                            input.baseAddress!, kernel: kernel.baseAddress!, bias: bias.baseAddress!,
                            geometry: geometry, filters: filters, activation: activation,
                            into: output.baseAddress!, logits: logits.baseAddress!)
                    }
                }
            }
        }
    }

    let derivativeOutput = backwardOutput ?? result.output
    input.withUnsafeBufferPointer { input in
        kernel.withUnsafeBufferPointer { kernel in
            outputGradient.withUnsafeBufferPointer { outputGradient in
                derivativeOutput.withUnsafeBufferPointer { output in
                    result.kernelGradient.withUnsafeMutableBufferPointer { kernelGradient in
                        result.biasGradient.withUnsafeMutableBufferPointer { biasGradient in
                            result.inputGradient.withUnsafeMutableBufferPointer { inputGradient in
                                backend.convolutionBackward(
                                    outputGradient.baseAddress!, output: output.baseAddress!, activation: activation,
                                    input: input.baseAddress!, kernel: kernel.baseAddress!, geometry: geometry,
                                    filters: filters, kernelGradient: kernelGradient.baseAddress!,
                                    biasGradient: biasGradient.baseAddress!, inputGradient: inputGradient.baseAddress!)
                            }
                        }
                    }
                }
            }
        }
    }
    return result
}
