/// The errors NeuralKit raises for bad input. Each message names the value, the rule
/// it breaks and, where one exists, the fix.
public enum NeuralKitError: Error, Equatable, CustomStringConvertible {
    /// An argument is outside its valid range, e.g. `Dropout(rate: 1.5)`.
    case invalidArgument(String)
    /// Two shapes that must agree do not, e.g. labels against predictions.
    case incompatibleShapes(String)
    /// A label is out of range, not integral, or of the wrong kind for the loss.
    case invalidLabels(String)
    /// A data file is missing, truncated or malformed.
    case invalidData(file: String, reason: String)
    /// A NaN or infinity appeared in inputs, predictions or the loss.
    case nonFiniteValue(String)
    /// A method was called before the model was ready for it, e.g. `fit` before `compile`.
    case notReady(String)

    public var description: String {
        switch self {
        case .invalidArgument(let message), .incompatibleShapes(let message), .invalidLabels(let message),
            .nonFiniteValue(let message), .notReady(let message):
            return message
        case .invalidData(let file, let reason):
            return "\(file): \(reason)"
        }
    }
}

/// Stops the program with `message` when `condition` is false, in every build
/// configuration. Swift's `precondition` drops its message in optimized builds, which
/// would leave a caller who broke an API contract without a reason.
func checkPrecondition(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #file, line: UInt = #line
) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
