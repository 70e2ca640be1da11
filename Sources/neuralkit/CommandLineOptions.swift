/// A command-line usage error: an unknown flag, a missing value, or a value out of range.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The arguments of one subcommand, as `--name value` or `--name=value` pairs and bare flags.
struct CommandLineOptions {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    /// Parses `arguments`, accepting only the options in `valued` (which take a value)
    /// and `switches` (which do not).
    init(_ arguments: [String], valued: Set<String>, switches: Set<String> = []) throws {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.hasPrefix("--") else {
                throw UsageError("unexpected argument '\(argument)'; options start with --")
            }
            var name = String(argument.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if switches.contains(name) {
                guard value == nil else { throw UsageError("option --\(name) takes no value") }
                flags.insert(name)
            } else if valued.contains(name) {
                if value == nil {
                    index += 1
                    guard index < arguments.count else { throw UsageError("option --\(name) needs a value") }
                    value = arguments[index]
                }
                guard values[name] == nil else { throw UsageError("option --\(name) is given twice") }
                values[name] = value
            } else {
                let known = (valued.union(switches)).sorted().map { "--" + $0 }.joined(separator: ", ")
                throw UsageError("unknown option --\(name); known options: \(known)")
            }
            index += 1
        }
    }

    func has(_ flag: String) -> Bool { flags.contains(flag) }

    func string(_ name: String) -> String? { values[name] }

    /// The integer value of `--name`, or `defaultValue` when absent; must lie in `range`.
    func integer(_ name: String, default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = values[name] else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError("--\(name) must be \(describe(range)), got '\(text)'")
        }
        return value
    }

    /// The number value of `--name`, or `defaultValue` when absent; must satisfy `isValid`.
    func number(_ name: String, default defaultValue: Double, rule: String, isValid: (Double) -> Bool) throws -> Double {
        guard let text = values[name] else { return defaultValue }
        guard let value = Double(text), value.isFinite, isValid(value) else {
            throw UsageError("--\(name) must be \(rule), got '\(text)'")
        }
        return value
    }

    /// The value of `--name`, which must be one of `choices`.
    func choice(_ name: String, default defaultValue: String, choices: [String]) throws -> String {
        guard let text = values[name] else { return defaultValue }
        guard choices.contains(text) else {
            throw UsageError("--\(name) must be one of \(choices.joined(separator: ", ")), got '\(text)'")
        }
        return text
    }

    private func describe(_ range: ClosedRange<Int>) -> String {
        range.upperBound == Int.max
            ? "an integer of at least \(range.lowerBound)"
            : "an integer from \(range.lowerBound) to \(range.upperBound)"
    }
}
