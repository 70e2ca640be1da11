import Foundation

/// A file path with Python `str.format` fields, as Keras' `ModelCheckpoint` fills them:
/// `"ckpt/epoch-{epoch:02d}-{val_loss:.4f}.nk"`.
///
/// A field is `{name}` or `{name:spec}`, and `{{` and `}}` stand for literal braces.
/// The spec follows Python's format mini-language without grouping:
/// `[[fill]align][sign][0][width][.precision][type]`, with `type` one of `d`, `f`,
/// `F`, `e`, `E`, `g`, `G` or `%`. Integer values accept every type, and float
/// values every type but `d`. A field without a type prints an integer in full and a
/// float in the shortest form that reads back as the same Double, as Python's `str`.
struct FilepathPattern {
    enum Segment {
        case literal(String)
        case field(name: String, spec: FormatSpec)
    }

    enum Value {
        case integer(Int)
        case float(Double)
    }

    let pattern: String
    let segments: [Segment]

    /// The field names in order of appearance, with repeats.
    var fieldNames: [String] {
        segments.compactMap { segment in
            if case .field(let name, _) = segment { return name }
            return nil
        }
    }

    /// Parses `pattern`; throws `NeuralKitError.invalidArgument` naming the pattern and
    /// the problem for unbalanced braces, an empty field name or an invalid spec.
    init(_ pattern: String) throws {
        self.pattern = pattern
        func invalid(_ reason: String) -> NeuralKitError {
            NeuralKitError.invalidArgument("invalid filepath pattern '\(pattern)': \(reason); write a literal brace as {{ or }}")
        }

        var segments: [Segment] = []
        var literal = ""
        var index = pattern.startIndex
        while index < pattern.endIndex {
            let character = pattern[index]
            let next = pattern.index(after: index)
            if character == "}" {
                guard next < pattern.endIndex, pattern[next] == "}" else { throw invalid("unmatched '}'") }
                literal.append("}")
                index = pattern.index(after: next)
                continue
            }
            guard character == "{" else {
                literal.append(character)
                index = next
                continue
            }
            if next < pattern.endIndex, pattern[next] == "{" {
                literal.append("{")
                index = pattern.index(after: next)
                continue
            }
            guard let close = pattern[next...].firstIndex(of: "}") else { throw invalid("unmatched '{'") }
            let body = pattern[next..<close]
            guard !body.contains("{") else { throw invalid("nested fields such as '{\(body)}' are not supported") }
            let colon = body.firstIndex(of: ":")
            let name = String(body[..<(colon ?? body.endIndex)])
            guard !name.isEmpty else { throw invalid("a field needs a name, such as {epoch} or {val_loss}") }
            guard !name.contains(where: { "!.[]".contains($0) }) else {
                throw invalid("field '{\(body)}' uses a conversion, attribute or index, which are not supported")
            }
            let spec: FormatSpec
            do {
                spec = try FormatSpec(colon.map { String(body[body.index(after: $0)...]) } ?? "")
            } catch let error as FormatSpec.ParseError {
                throw invalid("field '{\(body)}': \(error.reason)")
            }
            if !literal.isEmpty {
                segments.append(.literal(literal))
                literal = ""
            }
            segments.append(.field(name: name, spec: spec))
            index = pattern.index(after: close)
        }
        if !literal.isEmpty { segments.append(.literal(literal)) }
        self.segments = segments
    }

    /// Fills the fields from `values`.
    ///
    /// - Throws: `NeuralKitError.invalidArgument` when a field names a key missing from
    ///   `values` (the message lists the keys that exist) or when `d` formats a float.
    func format(_ values: [String: Value]) throws -> String {
        var result = ""
        for segment in segments {
            switch segment {
            case .literal(let text):
                result += text
            case .field(let name, let spec):
                guard let value = values[name] else {
                    throw NeuralKitError.invalidArgument(
                        "filepath pattern '\(pattern)' uses {\(name)}, but the available fields are "
                            + "\(values.keys.sorted().joined(separator: ", ")); remove the field or log that key")
                }
                guard let text = spec.format(value) else {
                    throw NeuralKitError.invalidArgument(
                        "filepath pattern '\(pattern)': format code 'd' in {\(name)} needs an integer, but \(name) is a float; "
                            + "use a float format such as {\(name):.4f}")
                }
                result += text
            }
        }
        return result
    }
}

/// One field's format spec in Python's mini-language, without grouping.
struct FormatSpec {
    struct ParseError: Error {
        let reason: String
    }

    var fill: Character = " "
    /// `<`, `>`, `^` or `=`; nil for the default, which right-aligns numbers.
    var align: Character?
    /// `+`, `-` or a space.
    var sign: Character = "-"
    var zeroPadding = false
    var width = 0
    var precision: Int?
    /// `d`, `f`, `F`, `e`, `E`, `g`, `G`, `%`, or nil for none.
    var type: Character?

    init(_ text: String) throws {
        var characters = Array(text)[...]
        if characters.count >= 2, "<>^=".contains(characters[characters.startIndex + 1]) {
            fill = characters.removeFirst()
            align = characters.removeFirst()
        } else if let first = characters.first, "<>^=".contains(first) {
            align = characters.removeFirst()
        }
        if let first = characters.first, "+- ".contains(first) {
            sign = characters.removeFirst()
        }
        if characters.first == "0" {
            zeroPadding = true
            characters.removeFirst()
        }
        var digits = ""
        while let first = characters.first, first.isASCII, first.isNumber {
            digits.append(characters.removeFirst())
        }
        if !digits.isEmpty {
            guard let value = Int(digits), value <= 1000 else { throw ParseError(reason: "width \(digits) exceeds 1000") }
            width = value
        }
        if characters.first == "." {
            characters.removeFirst()
            var precisionDigits = ""
            while let first = characters.first, first.isASCII, first.isNumber {
                precisionDigits.append(characters.removeFirst())
            }
            guard let value = Int(precisionDigits), value <= 100 else {
                throw ParseError(reason: "'.' must be followed by a precision from 0 to 100")
            }
            precision = value
        }
        if let first = characters.first {
            guard "dfFeEgG%".contains(first) else {
                throw ParseError(reason: "unsupported format code '\(first)'; use d, f, F, e, E, g, G or %")
            }
            type = characters.removeFirst()
        }
        guard characters.isEmpty else {
            throw ParseError(reason: "unexpected '\(String(characters))' at the end of the format spec")
        }
        if type == "d" && precision != nil {
            throw ParseError(reason: "precision is not allowed with format code 'd'")
        }
    }

    /// Returns the formatted value, or nil when the type `d` meets a float.
    func format(_ value: FilepathPattern.Value) -> String? {
        let isNegative: Bool
        var digits: String
        switch (value, type) {
        case (.integer(let integer), nil), (.integer(let integer), "d"):
            isNegative = integer < 0
            digits = String(integer.magnitude)
        case (.float, "d"):
            return nil
        case (.integer(let integer), _):
            (isNegative, digits) = FormatSpec.formatFloat(Double(integer), type: type, precision: precision)
        case (.float(let number), _):
            (isNegative, digits) = FormatSpec.formatFloat(number, type: type, precision: precision)
        }

        let signText = isNegative ? "-" : (sign == "+" ? "+" : (sign == " " ? " " : ""))
        let padding = max(0, width - signText.count - digits.count)
        let alignment = align ?? (zeroPadding ? "=" : ">")
        let fillCharacter = align == nil && zeroPadding ? "0" : fill
        let pad = { (count: Int) in String(repeating: fillCharacter, count: count) }
        switch alignment {
        case "<": return signText + digits + pad(padding)
        case "^": return pad(padding / 2) + signText + digits + pad(padding - padding / 2)
        case "=": return signText + pad(padding) + digits
        default: return pad(padding) + signText + digits
        }
    }

    /// Returns the sign and the digits of `number` in the C format that matches Python's type.
    private static func formatFloat(_ number: Double, type: Character?, precision: Int?) -> (Bool, String) {
        let isNegative = number.sign == .minus && !number.isNaN
        let magnitude = abs(number)
        if !magnitude.isFinite {
            let word = magnitude.isNaN ? "nan" : "inf"
            return (isNegative, type.map { "FEG".contains($0) } == true ? word.uppercased() : word)
        }
        switch type {
        case nil:
            // Python's str: the shortest round-trip form, or general format with the precision.
            if let precision { return (isNegative, String(format: "%.\(max(precision, 1))g", magnitude)) }
            return (isNegative, "\(magnitude)")
        case "%":
            return (isNegative, String(format: "%.\(precision ?? 6)f", magnitude * 100) + "%")
        default:
            return (isNegative, String(format: "%.\(precision ?? 6)\(type!)", magnitude))
        }
    }
}
