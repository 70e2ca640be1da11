/// `SeededGenerator`'s xoshiro256** state as stored in model files: four 16-digit
/// hexadecimal strings, which keep the 64-bit words exact in JSON readers that parse
/// every number as a double.
extension SeededGenerator {
    /// The state as four 16-digit lowercase hexadecimal strings.
    var stateRecord: [String] {
        stateWords.map { word in
            let digits = String(word, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
    }

    /// Restores a generator from `stateRecord`'s strings. Returns nil for a malformed
    /// record or the all-zero state.
    init?(stateRecord record: [String]) {
        // Exactly 16 lowercase hexadecimal digits, as written; UInt64(_:radix:) alone
        // would also take uppercase digits and a sign.
        let digits = Set("0123456789abcdef")
        let words = record.compactMap { $0.count == 16 && $0.allSatisfy(digits.contains) ? UInt64($0, radix: 16) : nil }
        guard words.count == 4, record.count == 4 else { return nil }
        self.init(stateWords: words)
    }
}
