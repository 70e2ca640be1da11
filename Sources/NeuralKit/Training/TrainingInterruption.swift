import Dispatch
import Foundation

/// A request to stop `fit` early, such as from Ctrl-C, that the caller opts into by
/// passing it to `fit(interruption:)`.
///
/// `fit` checks the request after every batch. It then finishes the current batch,
/// skips the rest of the epoch (its validation and `epochEnd` hooks included), calls
/// every callback's `trainInterrupted` and then `trainEnd`, and returns the history of
/// the completed epochs. A request that arrives after an epoch's last batch lets that
/// epoch finish and stops before the next one.
///
/// NeuralKit never installs a signal handler on its own. A command-line tool calls
/// `installSignalHandler()` around `fit`, so that the first SIGINT requests the stop
/// and a second one exits the process at once.
public final class TrainingInterruption: @unchecked Sendable {
    /// The point at which `fit` stopped: the 0-based epoch, the batches completed in it
    /// and the batches per epoch.
    public struct StopPoint: Sendable, Equatable {
        public let epoch: Int
        public let completedBatches: Int
        public let batchesPerEpoch: Int

        public init(epoch: Int, completedBatches: Int, batchesPerEpoch: Int) {
            self.epoch = epoch
            self.completedBatches = completedBatches
            self.batchesPerEpoch = batchesPerEpoch
        }
    }

    // `lock` guards `requestCount`, `stopPoint`, `signalSource` and `firstSignalTime`,
    // which the signal source's queue and the training thread both access.
    private let lock = NSLock()
    private var requestCount = 0
    private var storedStopPoint: StopPoint?
    private var signalSource: (any DispatchSourceSignal)?
    private var previousHandler: sig_t?
    /// When the first SIGINT arrived, in `DispatchTime` nanoseconds.
    private var firstSignalTime: UInt64?
    /// How long after the first SIGINT further ones count as the same interrupt.
    static let repeatGraceNanoseconds: UInt64 = 500_000_000

    public init() {}

    deinit {
        removeSignalHandler()
    }

    /// Whether a stop was requested since creation or the last `reset()`.
    public var isRequested: Bool {
        lock.withLock { requestCount > 0 }
    }

    /// The point at which the request stopped the last `fit` that received this object,
    /// or nil when that `fit` ran to the end.
    public var stopPoint: StopPoint? {
        lock.withLock { storedStopPoint }
    }

    /// Requests `fit` to stop after the current batch. It is safe to call from any
    /// thread, but not from a signal handler, so use `installSignalHandler()` for signals.
    public func request() {
        lock.withLock { requestCount += 1 }
    }

    /// Clears the request and the stop point.
    public func reset() {
        lock.withLock {
            requestCount = 0
            storedStopPoint = nil
            firstSignalTime = nil
        }
    }

    /// Makes SIGINT request the stop instead of ending the process.
    ///
    /// The first signal calls `request()` and prints a note to standard error. Signals in
    /// the next 0.5 s count as the same one, as when `timeout -s INT` signals both the
    /// process and its group. A later signal prints a note and exits with status 130
    /// (128 + SIGINT) at once, without running `atexit` handlers, so a save in progress
    /// leaves its temporary file behind and the target file intact. Call `removeSignalHandler()` when training ends to
    /// give Ctrl-C its default effect again. Installing twice has no further effect.
    public func installSignalHandler() {
        lock.lock()
        defer { lock.unlock() }
        guard signalSource == nil else { return }
        // The dispatch source runs the handler on a queue instead of in signal context,
        // which lets it take the lock and write messages. Ignoring the signal keeps the
        // default action, ending the process, from running as well.
        previousHandler = signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [weak self] in
            guard let self else { return }
            switch self.receiveSignal(at: DispatchTime.now().uptimeNanoseconds) {
            case .first:
                FileHandle.standardError.write(
                    Data("\nInterrupt received; stopping after the current batch. Press Ctrl-C again to exit at once.\n".utf8))
            case .sameInterrupt:
                break
            case .repeated:
                FileHandle.standardError.write(Data("\nInterrupted again; exiting without saving.\n".utf8))
                _exit(130)
            }
        }
        source.resume()
        signalSource = source
    }

    /// The handler's reading of one SIGINT.
    enum SignalMeaning: Equatable {
        /// The first interrupt: stop after the current batch.
        case first
        /// The first interrupt delivered again within the grace period: ignored.
        case sameInterrupt
        /// A second interrupt: exit at once.
        case repeated
    }

    /// Counts a SIGINT that arrived at `now` (`DispatchTime` nanoseconds) and returns
    /// what it means. `timeout -s INT` signals both the process and its group, so one
    /// interrupt can arrive twice at once, and signals within the grace period after
    /// the first count as one.
    func receiveSignal(at now: UInt64) -> SignalMeaning {
        lock.withLock {
            if let first = firstSignalTime, now - first < Self.repeatGraceNanoseconds { return .sameInterrupt }
            if firstSignalTime == nil { firstSignalTime = now }
            requestCount += 1
            return requestCount >= 2 ? .repeated : .first
        }
    }

    /// Restores the SIGINT handler that `installSignalHandler()` replaced.
    public func removeSignalHandler() {
        lock.lock()
        defer { lock.unlock() }
        guard let source = signalSource else { return }
        source.cancel()
        signalSource = nil
        signal(SIGINT, previousHandler ?? SIG_DFL)
        previousHandler = nil
    }

    /// Clears the stop point at the start of `fit`, but keeps a pending request.
    func beginTraining() {
        lock.withLock { storedStopPoint = nil }
    }

    func recordStop(_ point: StopPoint) {
        lock.withLock { storedStopPoint = point }
    }
}
