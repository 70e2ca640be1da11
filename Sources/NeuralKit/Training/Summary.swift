import Foundation

extension Sequential {
    /// Returns a table of the layers with their output shapes and parameter counts, in the
    /// layout of Keras 3's `model.summary()`, followed by the totals and, once compiled,
    /// the loss and the metric each name resolved to.
    ///
    /// - Throws: `NeuralKitError.notReady` before the model is built; build it with an
    ///   `Input` layer, `build(inputShape:)` or `fit`.
    public func summary() throws -> String {
        try buildFromInputLayer()
        guard inputShape != nil else {
            throw NeuralKitError.notReady(
                "model '\(name)' is not built yet, so its shapes are unknown; start it with Input(shape:) or call build(inputShape:)")
        }
        let widths = [33, 24, 15]
        func line(_ left: String, _ fill: String, _ middle: String, _ right: String) -> String {
            left + widths.map { String(repeating: fill, count: $0) }.joined(separator: middle) + right
        }
        func row(_ cells: [String], border: String) -> String {
            let padded = zip(cells, widths).enumerated().map { column, pair -> String in
                let (text, width) = pair
                let clipped = String(text.prefix(width - 2))
                let space = String(repeating: " ", count: width - 2 - clipped.count)
                return column == 2 ? " " + space + clipped + " " : " " + clipped + space + " "
            }
            return border + padded.joined(separator: border) + border
        }

        var lines = ["Model: \"\(name)\""]
        lines.append(line("┏", "━", "┳", "┓"))
        lines.append(row(["Layer (type)", "Output Shape", "Param #"], border: "┃"))
        lines.append(line("┡", "━", "╇", "┩"))
        let listedIndices = layers.indices.filter { !(layers[$0] is Input) }
        for (position, index) in listedIndices.enumerated() {
            let layer = layers[index]
            let count = layer.parameters.reduce(0) { $0 + $1.value.count }
            lines.append(row(
                ["\(layer.name) (\(layer.typeName))", formatShape(layerOutputShapes[index], unknownBatch: true), groupedThousands(count)],
                border: "│"))
            lines.append(position == listedIndices.count - 1 ? line("└", "─", "┴", "┘") : line("├", "─", "┼", "┤"))
        }
        let total = parameterCount
        let size = formatByteCount(total * MemoryLayout<Float>.size)
        lines.append(" Total params: \(groupedThousands(total)) (\(size))")
        lines.append(" Trainable params: \(groupedThousands(total)) (\(size))")
        lines.append(" Non-trainable params: 0 (0.00 B)")
        if let loss {
            let metricText = metrics.map { metric -> String in
                let kind = snakeCase(String(describing: type(of: metric)))
                return metric.name == kind ? metric.name : "\(metric.name) (\(kind))"
            }
            lines.append(" Loss: \(loss.name)" + (metricText.isEmpty ? "" : "; metrics: " + metricText.joined(separator: ", ")))
        }
        return lines.joined(separator: "\n")
    }
}

/// `431242` becomes `431,242`.
func groupedThousands(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var groups: [String] = []
    var end = digits.endIndex
    while end > digits.startIndex {
        let start = digits.index(end, offsetBy: -3, limitedBy: digits.startIndex) ?? digits.startIndex
        groups.insert(String(digits[start..<end]), at: 0)
        end = start
    }
    return (value < 0 ? "-" : "") + groups.joined(separator: ",")
}

/// Formats a byte count in binary units with two decimals, as Keras' summary: `1.65 MB`.
func formatByteCount(_ bytes: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return String(format: "%.2f", value) + " " + units[unit]
}
