import Foundation

/// Updates parameters from their gradients, as Keras' `keras.optimizers.Optimizer`.
public protocol Optimizer: AnyObject {
    var learningRate: Float { get set }
    /// The number of updates applied so far.
    var iterations: Int { get }
    /// Applies one update to every parameter from its `gradient`.
    func apply(to parameters: [Parameter])
    /// Throws `NeuralKitError.invalidArgument` unless every hyperparameter is in its valid range.
    func validate() throws
}

/// Adam, with Keras' defaults and update rule:
///
///     m = beta1 * m + (1 - beta1) * g
///     v = beta2 * v + (1 - beta2) * g²
///     alpha = learningRate * sqrt(1 - beta2^t) / (1 - beta1^t)
///     w -= alpha * m / (sqrt(v) + epsilon)
///
/// where `t` counts updates from 1. Note that `epsilon` is added outside the bias
/// correction of `v`, as in Keras, not inside it as in the Adam paper.
public final class Adam: Optimizer {
    public var learningRate: Float
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public private(set) var iterations = 0

    private var firstMoments: [[Float]] = []
    private var secondMoments: [[Float]] = []

    /// The update count and moment buffers, one buffer per parameter in `apply(to:)`'s
    /// order (empty before the first update), which model files save and restore.
    var state: (iterations: Int, firstMoments: [[Float]], secondMoments: [[Float]]) {
        get { (iterations, firstMoments, secondMoments) }
        set {
            iterations = newValue.iterations
            firstMoments = newValue.firstMoments
            secondMoments = newValue.secondMoments
        }
    }

    /// - Parameters:
    ///   - learningRate: default 0.001.
    ///   - beta1: decay of the first-moment average; in [0, 1); default 0.9.
    ///   - beta2: decay of the second-moment average; in [0, 1); default 0.999.
    ///   - epsilon: added to the denominator; default 1e-7.
    public init(learningRate: Float = 0.001, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-7) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
    }

    public func apply(to parameters: [Parameter]) {
        if firstMoments.count != parameters.count {
            firstMoments = parameters.map { [Float](repeating: 0, count: $0.value.count) }
            secondMoments = firstMoments
        }
        iterations += 1
        let t = Double(iterations)
        let alpha = Float(Double(learningRate) * (1 - pow(Double(beta2), t)).squareRoot() / (1 - pow(Double(beta1), t)))
        let (beta1, beta2, epsilon) = (self.beta1, self.beta2, self.epsilon)

        for (index, parameter) in parameters.enumerated() {
            parameter.gradient.scalars.withUnsafeBufferPointer { g in
                firstMoments[index].withUnsafeMutableBufferPointer { m in
                    secondMoments[index].withUnsafeMutableBufferPointer { v in
                        parameter.value.scalars.withUnsafeMutableBufferPointer { w in
                            for i in 0..<w.count {
                                m[i] = beta1 * m[i] + (1 - beta1) * g[i]
                                v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
                                w[i] -= alpha * m[i] / (v[i].squareRoot() + epsilon)
                            }
                        }
                    }
                }
            }
        }
    }

    public func validate() throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw NeuralKitError.invalidArgument("Adam: learningRate must be a positive number, got \(learningRate)")
        }
        guard beta1 >= 0, beta1 < 1 else { throw NeuralKitError.invalidArgument("Adam: beta1 must be in [0, 1), got \(beta1)") }
        guard beta2 >= 0, beta2 < 1 else { throw NeuralKitError.invalidArgument("Adam: beta2 must be in [0, 1), got \(beta2)") }
        guard epsilon >= 0 else { throw NeuralKitError.invalidArgument("Adam: epsilon must be non-negative, got \(epsilon)") }
    }
}

/// Stochastic gradient descent with optional momentum, as Keras' `SGD`:
/// `velocity = momentum * velocity - learningRate * g; w += velocity`
/// (with `nesterov`, `w += momentum * velocity - learningRate * g`).
public final class SGD: Optimizer {
    public var learningRate: Float
    public let momentum: Float
    public let nesterov: Bool
    public private(set) var iterations = 0
    private var velocities: [[Float]] = []

    /// The update count and velocity buffers, one buffer per parameter in `apply(to:)`'s
    /// order (empty before the first update), which model files save and restore.
    var state: (iterations: Int, velocities: [[Float]]) {
        get { (iterations, velocities) }
        set {
            iterations = newValue.iterations
            velocities = newValue.velocities
        }
    }

    /// - Parameters:
    ///   - learningRate: default 0.01.
    ///   - momentum: in [0, 1]; default 0.
    public init(learningRate: Float = 0.01, momentum: Float = 0, nesterov: Bool = false) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
    }

    public func validate() throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw NeuralKitError.invalidArgument("SGD: learningRate must be a positive number, got \(learningRate)")
        }
        guard momentum >= 0, momentum <= 1 else {
            throw NeuralKitError.invalidArgument("SGD: momentum must be in [0, 1], got \(momentum)")
        }
    }

    public func apply(to parameters: [Parameter]) {
        if velocities.count != parameters.count {
            velocities = parameters.map { [Float](repeating: 0, count: $0.value.count) }
        }
        iterations += 1
        let (learningRate, momentum, nesterov) = (self.learningRate, self.momentum, self.nesterov)
        for (index, parameter) in parameters.enumerated() {
            parameter.gradient.scalars.withUnsafeBufferPointer { g in
                velocities[index].withUnsafeMutableBufferPointer { velocity in
                    parameter.value.scalars.withUnsafeMutableBufferPointer { w in
                        for i in 0..<w.count {
                            velocity[i] = momentum * velocity[i] - learningRate * g[i]
                            w[i] += nesterov ? momentum * velocity[i] - learningRate * g[i] : velocity[i]
                        }
                    }
                }
            }
        }
    }
}
