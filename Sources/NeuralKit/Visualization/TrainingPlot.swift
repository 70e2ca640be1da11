import CCairo
import Foundation

/// Draws the per-epoch curves of one or more training runs into a PNG file, as the
/// usual Keras plots of `history.history` do. One panel shows the loss and one the first
/// metric (accuracy when logged), with the epochs on the x-axis counted from 1, so a
/// run resumed at `initialEpoch` 10 starts at 11. Training values are solid lines and
/// validation values (`val_` keys) dashed lines. Each run gets its own colour, and the
/// legend names each curve as "<run name> training" or "<run name> validation".
///
/// The file replaces any file at `url` atomically.
///
/// - Parameters:
///   - runs: the runs to draw, each with the name used in the legend.
///   - width: image width in pixels, from 480 to 16384.
///   - height: image height in pixels, from 300 to 16384.
///   - title: the text at the top of the image.
/// - Throws: `NeuralKitError.invalidArgument` for no runs, a run without epochs or without
///   `loss`, or a size out of range. `NeuralKitError.invalidData` naming `url` when its
///   folder is missing or not writable, or when the write fails.
public func plotTrainingHistory(
    _ runs: [(name: String, history: History)], to url: URL,
    width: Int = 1200, height: Int = 520, title: String = "Training history"
) throws {
    guard !runs.isEmpty else {
        throw NeuralKitError.invalidArgument("plotTrainingHistory needs at least one run, got none")
    }
    for run in runs {
        guard !run.history.epoch.isEmpty else {
            throw NeuralKitError.invalidArgument("run '\(run.name)' has no epochs to plot; train for at least one epoch")
        }
        guard run.history["loss"] != nil else {
            throw NeuralKitError.invalidArgument(
                "run '\(run.name)' has no 'loss' values (keys: \(run.history.keys)); pass the History that fit returned")
        }
    }
    guard (480...16384).contains(width), (300...16384).contains(height) else {
        throw NeuralKitError.invalidArgument("plot size must be 480 to 16384 pixels wide and 300 to 16384 high, got \(width)x\(height)")
    }
    try checkOutputFile(url)

    let canvas = try PlotCanvas(width: width, height: height)
    let layout = TrainingPlotLayout(runCount: runs.count, width: Double(width), height: Double(height))
    canvas.drawText(title, x: Double(width) / 2, y: 32, size: 20, alignment: .center, bold: true)

    let metrics = plottedMetrics(runs.map(\.history))
    let panels = layout.panels(count: metrics.count)
    guard let panelHeight = panels.first?.height, panelHeight >= 80 else {
        throw NeuralKitError.invalidArgument(
            "a \(width)x\(height) plot leaves too little room for the panels above a legend of \(runs.count) runs; raise the height")
    }
    for (metric, area) in zip(metrics, panels) {
        drawPanel(metric: metric, runs: runs, area: area, on: canvas)
    }
    drawLegend(runs: runs, area: layout.legend, on: canvas)

    if let error = canvas.drawingError {
        throw NeuralKitError.invalidData(file: url.path, reason: "drawing the plot failed: \(error)")
    }
    try writePNG(canvas.surface, to: url)
}

/// Returns the keys that get a panel: `loss`, then `accuracy` if any run logged it, or else the
/// first other training metric.
private func plottedMetrics(_ histories: [History]) -> [String] {
    let trainingKeys = histories.flatMap(\.keys).filter { $0 != "loss" && !$0.hasPrefix("val_") }
    if trainingKeys.contains("accuracy") { return ["loss", "accuracy"] }
    return ["loss"] + trainingKeys.prefix(1)
}

/// Positions of the panels and legend, in pixels.
private struct TrainingPlotLayout {
    let runCount: Int
    let width: Double
    let height: Double

    static let titleHeight = 50.0
    static let legendRowHeight = 22.0
    /// Room left of a panel for tick labels and the rotated axis label.
    static let leftMargin = 80.0
    static let rightMargin = 30.0
    /// Room above a panel for its title, and below it for tick labels and the axis label.
    static let panelTitleHeight = 30.0
    static let bottomMargin = 55.0

    var legend: PlotRect {
        let legendHeight = Double(runCount) * Self.legendRowHeight + 10
        return PlotRect(x: Self.leftMargin, y: height - legendHeight, width: width - Self.leftMargin, height: legendHeight)
    }

    /// Returns the plot areas (inside the axes) of `count` panels side by side.
    func panels(count: Int) -> [PlotRect] {
        let top = Self.titleHeight + Self.panelTitleHeight
        let bottom = legend.y - Self.bottomMargin
        let slot = width / Double(count)
        return (0..<count).map { index in
            PlotRect(
                x: Double(index) * slot + Self.leftMargin, y: top,
                width: slot - Self.leftMargin - Self.rightMargin, height: bottom - top)
        }
    }
}

private func drawPanel(metric: String, runs: [(name: String, history: History)], area: PlotRect, on canvas: PlotCanvas) {
    let epochNumbers = runs.flatMap(\.history.epoch).map { $0 + 1 }
    let allValues = runs.flatMap { run in
        (run.history[metric] ?? []) + (run.history["val_" + metric] ?? [])
    }.map(Double.init)
    let xAxis = PlotAxis.epochs(first: epochNumbers.min() ?? 1, last: epochNumbers.max() ?? 1)
    let yAxis = PlotAxis.values(allValues)

    // Grid lines, ticks and tick labels.
    for tick in yAxis.ticks {
        let y = yAxis.position(tick, low: area.bottom, high: area.y)
        canvas.strokeLine(from: (area.x, y), to: (area.right, y), color: .grid, lineWidth: 1)
        canvas.strokeLine(from: (area.x - 5, y), to: (area.x, y), color: .black, lineWidth: 1)
        canvas.drawText(yAxis.label(tick), x: area.x - 8, y: y + 4, size: 12, alignment: .right)
    }
    for tick in xAxis.ticks {
        let x = xAxis.position(tick, low: area.x, high: area.right)
        canvas.strokeLine(from: (x, area.bottom), to: (x, area.bottom + 5), color: .black, lineWidth: 1)
        canvas.drawText(xAxis.label(tick), x: x, y: area.bottom + 19, size: 12, alignment: .center)
    }
    canvas.strokeRectangle(area, color: .black, lineWidth: 1)

    // Titles and axis labels.
    let panelTitle = metric.prefix(1).uppercased() + metric.dropFirst()
    canvas.drawText(panelTitle, x: area.x + area.width / 2, y: area.y - 10, size: 15, alignment: .center, bold: true)
    canvas.drawText("Epoch", x: area.x + area.width / 2, y: area.bottom + 40, size: 13, alignment: .center)
    canvas.drawText(metric, x: area.x - TrainingPlotLayout.leftMargin + 22, y: area.y + area.height / 2, size: 13,
                    alignment: .center, rotated: true)

    // Curves: a marker on every epoch keeps single-epoch runs visible, and earlier runs
    // are drawn wider so that a later run with the same values leaves them visible.
    for (index, run) in runs.enumerated() {
        let color = PlotColor.cycle[index % PlotColor.cycle.count]
        let lineWidth = 2 + 2 * Double(runs.count - 1 - index)
        for (key, dash) in [(metric, [Double]()), ("val_" + metric, [7.0, 5.0])] {
            guard let values = run.history[key] else { continue }
            let points: [(Double, Double)?] = zip(run.history.epoch, values).map { epoch, value in
                guard value.isFinite else { return nil }
                return (
                    xAxis.position(Double(epoch + 1), low: area.x, high: area.right),
                    yAxis.position(Double(value), low: area.bottom, high: area.y))
            }
            canvas.strokePolyline(points, color: color, lineWidth: lineWidth, dash: dash)
            for case let point? in points {
                canvas.fillCircle(center: point, radius: lineWidth + 1, color: color)
            }
        }
    }
}

/// Draws one legend row per run: a solid sample for training and a dashed one for validation.
private func drawLegend(runs: [(name: String, history: History)], area: PlotRect, on canvas: PlotCanvas) {
    for (index, run) in runs.enumerated() {
        let color = PlotColor.cycle[index % PlotColor.cycle.count]
        let y = area.y + Double(index) * TrainingPlotLayout.legendRowHeight + 14
        var x = area.x
        var entries = [("\(run.name) training", [Double]())]
        if run.history.keys.contains(where: { $0.hasPrefix("val_") }) {
            entries.append(("\(run.name) validation", [7.0, 5.0]))
        }
        for (label, dash) in entries {
            canvas.strokePolyline([(x, y - 4), (x + 36, y - 4)], color: color, lineWidth: 2, dash: dash)
            canvas.drawText(label, x: x + 44, y: y, size: 13)
            x += 44 + canvas.textWidth(label, size: 13) + 30
        }
    }
}
