//! Charts as inline SVG drawn on the server: no chart library, nothing fetched by the browser.
//! A chart is lines over time on one y axis from 0, with an optional dashed threshold (an RPO
//! target), labelled with the axis' top value and the time span.

use maud::{html, Markup};

/// Drawing area, in SVG user units (the SVG scales to its container).
const W: f64 = 720.0;
const H: f64 = 180.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 20.0;

/// One line: its legend, its CSS class (colour), its points (time ms, value).
pub struct Line<'a> {
    pub label: &'a str,
    pub class: &'a str,
    pub points: Vec<(i64, f64)>,
}

/// A value with its unit, short (`1.5 s`, `12 MiB`).
pub fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "s" if v >= 3600.0 => format!("{:.1} h", v / 3600.0),
        "s" if v >= 60.0 => format!("{:.1} min", v / 60.0),
        "s" => format!("{v:.1} s"),
        "B" => fmt_bytes(v),
        _ => format!("{v:.0} {unit}"),
    }
}

/// Bytes in binary units.
pub fn fmt_bytes(v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// The chart: `lines` between `from_ms` and `to_ms`, `threshold` dashed if given.
pub fn chart(
    title: &str,
    unit: &str,
    from_ms: i64,
    to_ms: i64,
    lines: &[Line<'_>],
    threshold: Option<(&str, f64)>,
) -> Markup {
    let span = (to_ms - from_ms).max(1) as f64;
    let mut top = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(threshold.map(|t| t.1 * 1.2))
        .fold(0.0f64, f64::max);
    if top <= 0.0 {
        top = 1.0;
    }
    let x = |t: i64| LEFT + (t - from_ms) as f64 / span * (W - LEFT);
    let y = |v: f64| (H - BOTTOM) - v / top * (H - BOTTOM - 10.0);
    let count: usize = lines.iter().map(|l| l.points.len()).sum();
    html! {
        figure.chart data-samples=(count) {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(title) {
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W) y2=(H - BOTTOM) {}
                line.axis x1=(LEFT) y1="10" x2=(LEFT) y2=(H - BOTTOM) {}
                text.tick x="2" y="16" { (fmt_value(top, unit)) }
                text.tick x="2" y=(H - BOTTOM) { "0" }
                text.tick x=(LEFT) y=(H - 4.0) { (humantime::format_duration(std::time::Duration::from_secs(((to_ms - from_ms) / 1000).max(0) as u64))) " ago" }
                text.tick x=(W - 30.0) y=(H - 4.0) { "now" }
                @if let Some((label, v)) = threshold {
                    line.threshold x1=(LEFT) y1=(y(v)) x2=(W) y2=(y(v)) {}
                    text.tick x=(LEFT + 4.0) y=(y(v) - 3.0) { (label) " " (fmt_value(v, unit)) }
                }
                @for l in lines {
                    @if !l.points.is_empty() {
                        polyline class=(format!("series {}", l.class)) points=(
                            l.points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect::<Vec<_>>().join(" ")
                        ) {}
                    }
                }
            }
            p.legend {
                @for l in lines {
                    span class=(format!("key {}", l.class)) { (l.label) }
                }
                @if count == 0 { span { "no samples yet (one per 10 s)" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_points_and_threshold_and_formats() {
        let m = chart(
            "RPO",
            "s",
            0,
            100_000,
            &[Line {
                label: "rpo",
                class: "rpo",
                points: vec![(0, 0.0), (50_000, 3.0), (100_000, 1.0)],
            }],
            Some(("target", 6.0)),
        )
        .into_string();
        assert!(m.contains("data-samples=\"3\""), "{m}");
        assert!(
            m.contains("<polyline class=\"series rpo\" points=\"60.0,160.0 390.0,"),
            "{m}"
        );
        assert!(m.contains("target 6.0 s"), "{m}");
        assert_eq!(fmt_bytes(1536.0), "1.5 KiB");
        assert_eq!(fmt_value(90.0, "s"), "1.5 min");
    }
}
