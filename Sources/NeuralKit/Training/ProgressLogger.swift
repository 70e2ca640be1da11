import Foundation

/// Prints training progress as Keras 3 does:
///
///     Epoch 3/25
///     192/192 - 9s 47ms/step - loss: 0.0702 - accuracy: 0.9788 - val_loss: 0.0486 - val_accuracy: 0.9856
///
/// With `.progressBar` on a terminal, the step line is redrawn in place with a bar,
/// the estimated time left, and the running metrics.
final class ProgressLogger {
    private let verbosity: Verbosity
    private let write: (String) -> Void
    private var epochStart = Date()
    private var lastDraw = Date.distantPast

    init(verbosity: Verbosity, write: ((String) -> Void)? = nil) {
        let isTerminal = isatty(STDOUT_FILENO) != 0
        self.verbosity = verbosity == .progressBar && !isTerminal && write == nil ? .epochLines : verbosity
        self.write = write ?? { text in
            fputs(text, stdout)
            fflush(stdout)
        }
    }

    func beginEpoch(_ epoch: Int, of epochs: Int) {
        epochStart = Date()
        lastDraw = .distantPast
        if verbosity != .silent { write("Epoch \(epoch + 1)/\(epochs)\n") }
    }

    /// Redraws the progress bar after a batch, at most ten times a second.
    func batchEnded(step: Int, of steps: Int, logs: [(String, Float)]) {
        guard verbosity == .progressBar, step < steps else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(epochStart)
        let perStep = elapsed / Double(step)
        let remaining = perStep * Double(steps - step)
        write("\r\(stepCounter(step, steps)) \(bar(step, steps)) \(Int(remaining.rounded()))s \(Int((perStep * 1000).rounded()))ms/step"
            + formatLogs(logs) + "\u{1B}[K")
    }

    /// Ends the epoch's output with a line for a `TrainingInterruption` after `step` of `steps`.
    func endInterruptedEpoch(step: Int, of steps: Int, logs: [(String, Float)]) {
        guard verbosity != .silent else { return }
        let clear = verbosity == .progressBar ? "\r" : ""
        let clearToEnd = verbosity == .progressBar ? "\u{1B}[K" : ""
        write("\(clear)\(step)/\(steps) - interrupted" + formatLogs(logs) + "\(clearToEnd)\n")
    }

    /// Prints the epoch's closing line with training and validation logs.
    /// Prints the end of an epoch of `steps` steps, of which `stepsRun` ran in this call
    /// (fewer when training continued inside the epoch), which sets the time per step.
    func endEpoch(steps: Int, stepsRun: Int, trainingSeconds: Double, logs: [(String, Float)]) {
        guard verbosity != .silent else { return }
        let total = Date().timeIntervalSince(epochStart)
        let perStep = Int((trainingSeconds / Double(max(stepsRun, 1)) * 1000).rounded())
        let timing = "\(Int(total.rounded()))s \(perStep)ms/step"
        if verbosity == .progressBar {
            write("\r\(stepCounter(steps, steps)) \(bar(steps, steps)) \(timing)" + formatLogs(logs) + "\u{1B}[K\n")
        } else {
            write("\(steps)/\(steps) - \(timing)" + formatLogs(logs) + "\n")
        }
    }

    private func stepCounter(_ step: Int, _ steps: Int) -> String {
        let width = String(steps).count
        return String(repeating: " ", count: width - String(step).count) + "\(step)/\(steps)"
    }

    private func bar(_ step: Int, _ steps: Int) -> String {
        let width = 20
        let done = steps > 0 ? step * width / steps : width
        return String(repeating: "━", count: done) + String(repeating: "─", count: width - done)
    }
}

/// Formats logs as Keras does: ` - loss: 0.0702 - accuracy: 0.9788`.
func formatLogs(_ logs: [(String, Float)]) -> String {
    logs.map { " - \($0.0): \(formatMetric($0.1))" }.joined()
}

/// Four decimals, as Keras prints metrics, or scientific notation for values below 1e-3.
func formatMetric(_ value: Float) -> String {
    if value != 0 && abs(value) < 1e-3 && value.isFinite {
        return String(format: "%.4e", Double(value))
    }
    return String(format: "%.4f", Double(value))
}
