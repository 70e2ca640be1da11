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

/// Turns the gradient with respect to an activation's output into the gradient with
/// respect to its input, in place, for one row, given the activation's output `y`.
func activationBackward(_ gradient: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>, count: Int, activation: Activation) {
    switch activation {
    case .linear:
        break
    case .relu:
        for c in 0..<count { gradient[c] = y[c] > 0 ? gradient[c] : 0 }
    case .sigmoid:
        for c in 0..<count { gradient[c] *= y[c] * (1 - y[c]) }
    case .tanh:
        for c in 0..<count { gradient[c] *= 1 - y[c] * y[c] }
    case .softmax:
        var dot: Float = 0
        for c in 0..<count { dot += gradient[c] * y[c] }
        for c in 0..<count { gradient[c] = y[c] * (gradient[c] - dot) }
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
