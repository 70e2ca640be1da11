import Foundation

/// Applies `activation` in place to one row of `count` values; softmax acts on the whole row.
func activate(_ row: UnsafeMutablePointer<Float>, count: Int, activation: Activation) {
    switch activation {
    case .linear:
        break
    case .relu:
        // `<` leaves NaN in place, so a diverging model is caught by the loss.
        for c in 0..<count { row[c] = row[c] < 0 ? 0 : row[c] }
    case .sigmoid:
        for c in 0..<count { row[c] = stableSigmoid(row[c]) }
    case .tanh:
        for c in 0..<count { row[c] = Foundation.tanh(row[c]) }
    case .softmax:
        softmaxRow(row, count: count)
    }
}

/// Writes into `result` the gradient with respect to an activation's input, from the
/// gradient `g` with respect to its output and the output `y` itself. The values form
/// `rows` rows of `columns`, and softmax acts on each whole row.
func activationBackward(
    _ g: UnsafePointer<Float>, output y: UnsafePointer<Float>, into result: UnsafeMutablePointer<Float>,
    rows: Int, columns: Int, activation: Activation
) {
    let count = rows * columns
    switch activation {
    case .linear:
        result.update(from: g, count: count)
    case .relu:
        for i in 0..<count { result[i] = y[i] > 0 ? g[i] : 0 }
    case .sigmoid:
        for i in 0..<count { result[i] = g[i] * y[i] * (1 - y[i]) }
    case .tanh:
        for i in 0..<count { result[i] = g[i] * (1 - y[i] * y[i]) }
    case .softmax:
        for r in 0..<rows {
            let offset = r * columns
            var dot: Float = 0
            for c in 0..<columns { dot += g[offset + c] * y[offset + c] }
            for c in 0..<columns { result[offset + c] = y[offset + c] * (g[offset + c] - dot) }
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
