import FleetAPI
import Foundation

/// A cluster's dumps per day as an inline SVG bar chart: drawn on the server, no script.
enum TimelineChart {
    static func svg(_ daily: [ClusterDetail.DailyCount], width: Int = 640, height: Int = 140) -> String {
        guard let top = daily.map(\.dumps).max(), top > 0 else { return "<p class=\"muted\">no dumps yet</p>" }
        let plot = Double(height - 30)
        let slot = Double(width) / Double(daily.count)
        let bar = max(2, slot * 0.7)
        var parts = ["<svg class=\"chart\" id=\"timeline\" role=\"img\" aria-label=\"dumps per day\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\">"]
        for (index, day) in daily.enumerated() {
            let barHeight = plot * Double(day.dumps) / Double(top)
            let x = Double(index) * slot + (slot - bar) / 2
            parts.append(String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>%@: %d</title></rect>",
                                x, plot - barHeight + 4, bar, barHeight, HTMLPage.escape(day.day), day.dumps))
            if daily.count <= 14 || index % max(1, daily.count / 7) == 0 {
                parts.append(String(format: "<text x=\"%.1f\" y=\"%d\">%@</text>", x, height - 8, HTMLPage.escape(String(day.day.suffix(5)))))
            }
        }
        parts.append("<text x=\"0\" y=\"12\">max \(top) a day</text></svg>")
        return parts.joined()
    }
}
