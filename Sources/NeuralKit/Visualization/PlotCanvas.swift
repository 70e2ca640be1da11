import CCairo
import Foundation

/// An RGB colour with components in [0, 1].
struct PlotColor {
    var red: Double
    var green: Double
    var blue: Double

    init(_ red: Int, _ green: Int, _ blue: Int) {
        self.red = Double(red) / 255
        self.green = Double(green) / 255
        self.blue = Double(blue) / 255
    }

    static let black = PlotColor(0, 0, 0)
    static let white = PlotColor(255, 255, 255)
    static let grid = PlotColor(225, 225, 225)

    /// Matplotlib's default colour cycle ("tab10"), so that plots look familiar.
    static let cycle = [
        PlotColor(31, 119, 180), PlotColor(255, 127, 14), PlotColor(44, 160, 44), PlotColor(214, 39, 40),
        PlotColor(148, 103, 189), PlotColor(140, 86, 75), PlotColor(227, 119, 194), PlotColor(127, 127, 127),
        PlotColor(188, 189, 34), PlotColor(23, 190, 207),
    ]
}

/// A rectangle in pixels, with y growing downwards as in cairo.
struct PlotRect {
    var x: Double
    var y: Double
    var width: Double
    var height: Double

    var right: Double { x + width }
    var bottom: Double { y + height }
}

/// Horizontal placement of a text relative to its anchor point.
enum TextAlignment {
    case left, center, right
}

/// A cairo image surface with a drawing context and the few drawing operations plots need.
final class PlotCanvas {
    let surface: OpaquePointer
    let context: OpaquePointer
    let width: Int
    let height: Int

    /// Creates a white RGB canvas of `width` by `height` pixels.
    ///
    /// - Throws: `NeuralKitError.invalidArgument` when cairo cannot create the surface.
    init(width: Int, height: Int) throws {
        let surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, Int32(width), Int32(height))!
        let status = cairo_surface_status(surface)
        guard status == CAIRO_STATUS_SUCCESS else {
            cairo_surface_destroy(surface)
            throw NeuralKitError.invalidArgument("cannot create a \(width)x\(height) image: \(cairoStatusMessage(status))")
        }
        self.surface = surface
        self.context = cairo_create(surface)!
        self.width = width
        self.height = height
        setColor(.white)
        cairo_paint(context)
    }

    deinit {
        cairo_destroy(context)
        cairo_surface_destroy(surface)
    }

    /// The first error cairo recorded while drawing, or nil.
    var drawingError: String? {
        let status = cairo_status(context)
        return status == CAIRO_STATUS_SUCCESS ? nil : cairoStatusMessage(status)
    }

    func setColor(_ color: PlotColor) {
        cairo_set_source_rgb(context, color.red, color.green, color.blue)
    }

    /// Sets a dash pattern of `on` and `off` pixels, or a solid line when `pattern` is empty.
    func setDash(_ pattern: [Double]) {
        cairo_set_dash(context, pattern, Int32(pattern.count), 0)
    }

    func strokeLine(from start: (Double, Double), to end: (Double, Double), color: PlotColor, lineWidth: Double) {
        setColor(color)
        cairo_set_line_width(context, lineWidth)
        cairo_move_to(context, start.0, start.1)
        cairo_line_to(context, end.0, end.1)
        cairo_stroke(context)
    }

    func strokeRectangle(_ rect: PlotRect, color: PlotColor, lineWidth: Double) {
        setColor(color)
        cairo_set_line_width(context, lineWidth)
        cairo_rectangle(context, rect.x, rect.y, rect.width, rect.height)
        cairo_stroke(context)
    }

    func fillCircle(center: (Double, Double), radius: Double, color: PlotColor) {
        setColor(color)
        cairo_new_sub_path(context)
        cairo_arc(context, center.0, center.1, radius, 0, 2 * Double.pi)
        cairo_fill(context)
    }

    /// Strokes a polyline through `points`, starting a new piece after each nil point.
    func strokePolyline(_ points: [(Double, Double)?], color: PlotColor, lineWidth: Double, dash: [Double]) {
        setColor(color)
        cairo_set_line_width(context, lineWidth)
        setDash(dash)
        var penDown = false
        for point in points {
            guard let point else {
                penDown = false
                continue
            }
            if penDown {
                cairo_line_to(context, point.0, point.1)
            } else {
                cairo_move_to(context, point.0, point.1)
                penDown = true
            }
        }
        cairo_stroke(context)
        setDash([])
    }

    /// Measures the width in pixels of `text` at `size` points.
    func textWidth(_ text: String, size: Double, bold: Bool = false) -> Double {
        selectFont(size: size, bold: bold)
        var extents = cairo_text_extents_t()
        cairo_text_extents(context, text, &extents)
        return extents.x_advance
    }

    /// Draws `text` with its baseline at `y`, aligned on `x`. With `rotated`, the text
    /// turns 90 degrees counter-clockwise, as a y-axis label does.
    func drawText(
        _ text: String, x: Double, y: Double, size: Double, alignment: TextAlignment = .left,
        bold: Bool = false, rotated: Bool = false, color: PlotColor = .black
    ) {
        let width = textWidth(text, size: size, bold: bold)
        let offset: Double
        switch alignment {
        case .left: offset = 0
        case .center: offset = -width / 2
        case .right: offset = -width
        }
        setColor(color)
        cairo_save(context)
        cairo_translate(context, x, y)
        if rotated { cairo_rotate(context, -Double.pi / 2) }
        cairo_move_to(context, offset, 0)
        cairo_show_text(context, text)
        cairo_restore(context)
    }

    private func selectFont(size: Double, bold: Bool) {
        cairo_select_font_face(
            context, "sans-serif", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        cairo_set_font_size(context, size)
    }
}

/// An axis range with tick positions at round numbers.
struct PlotAxis {
    var minimum: Double
    var maximum: Double
    var ticks: [Double]
    /// Digits after the decimal point in tick labels.
    var decimals: Int

    func label(_ value: Double) -> String {
        String(format: "%.\(decimals)f", value)
    }

    /// Maps `value` to a pixel coordinate between `low` (at `minimum`) and `high` (at `maximum`).
    func position(_ value: Double, low: Double, high: Double) -> Double {
        low + (value - minimum) / (maximum - minimum) * (high - low)
    }

    /// Makes a value axis covering `values` with 5% padding and at most nine ticks, at
    /// multiples of 1, 2 or 5 times a power of ten.
    static func values(_ values: [Double]) -> PlotAxis {
        let finite = values.filter(\.isFinite)
        var low = finite.min() ?? 0
        var high = finite.max() ?? 1
        if high - low < 1e-9 * max(1, abs(high)) {
            let margin = max(abs(high) * 0.1, 0.05)
            low -= margin
            high += margin
        }
        let padding = (high - low) * 0.05
        low -= padding
        high += padding

        let step = niceStep(for: (high - low) / 8)
        var ticks: [Double] = []
        var tick = (low / step).rounded(.up) * step
        while tick <= high + step * 1e-9 {
            ticks.append(abs(tick) < step * 1e-9 ? 0 : tick)
            tick += step
        }
        let decimals = max(0, Int(-log10(step).rounded(.down)))
        return PlotAxis(minimum: low, maximum: high, ticks: ticks, decimals: decimals)
    }

    /// Makes an epoch axis from `first` to `last` (counted from 1) with ticks at multiples
    /// of a whole step, at most about ten of them.
    static func epochs(first: Int, last: Int) -> PlotAxis {
        let span = last - first
        let padding = span == 0 ? 1 : Double(span) * 0.03
        var step = 1
        for candidate in [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] {
            step = candidate
            if (span + 1) / candidate <= 10 { break }
        }
        let firstTick = (first + step - 1) / step * step
        let ticks = stride(from: firstTick, through: last, by: step).map(Double.init)
        return PlotAxis(minimum: Double(first) - padding, maximum: Double(last) + padding, ticks: ticks, decimals: 0)
    }

    /// Returns the smallest of 1, 2, 5 or 10 times a power of ten that is at least `rawStep`.
    private static func niceStep(for rawStep: Double) -> Double {
        let magnitude = pow(10, log10(rawStep).rounded(.down))
        for factor in [1.0, 2, 5] where rawStep <= factor * magnitude * (1 + 1e-9) {
            return factor * magnitude
        }
        return 10 * magnitude
    }
}
