//! `timeline.svg`: a line chart of every series over scenario time, with
//! events (grey dashed), migrations (orange), client errors (red ticks) and
//! assertion verdicts (green/red triangles) marked.

use std::fmt::Write as _;

use crate::record::{percentile, Mark, MarkKind, Sample};

const PALETTE: [&str; 10] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f",
    "#ff7f0e", "#393b79",
];
/// The image's size.
const WIDTH: f64 = 1100.0;
const HEIGHT: f64 = 560.0;
/// Margins: left (y labels), right (legend), top (title), bottom (event
/// labels).
const LEFT: f64 = 60.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 190.0;
/// A range wider than this many times the median turns the scale
/// logarithmic.
const LOG_RANGE: f64 = 8.0;
/// Event labels at least this far apart.
const LABEL_GAP: f64 = 24.0;
/// Event labels are cut to this many characters.
const LABEL_CHARS: usize = 30;
/// Legend rows this far apart.
const LEGEND_ROW: f64 = 16.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The plot area and its scales.
struct Plot {
    l: f64,
    t: f64,
    pw: f64,
    ph: f64,
    xmax: f64,
    log: bool,
    lo: f64,
    hi: f64,
}

impl Plot {
    fn new(duration: f64, samples: &[Sample]) -> Plot {
        let mut values: Vec<f64> = samples
            .iter()
            .map(|s| s.value)
            .filter(|v| *v > 0.0)
            .collect();
        let p50 = percentile(&mut values, 0.5).unwrap_or(1.0);
        let vmax = values.iter().copied().fold(1.0, f64::max);
        let vmin = values
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(vmax);
        // A spike (a ping that waited out a partition) would flatten
        // everything else on a linear scale: use a logarithmic one when the
        // range is wide.
        let log = vmax / p50.max(1e-9) > LOG_RANGE;
        let (lo, hi) = if log {
            (floor_125(vmin.max(0.1) / 1.2), vmax * 1.3)
        } else {
            (0.0, vmax * 1.15)
        };
        Plot {
            l: LEFT,
            t: TOP,
            pw: WIDTH - LEFT - RIGHT,
            ph: HEIGHT - TOP - BOTTOM,
            xmax: duration.max(1.0),
            log,
            lo,
            hi,
        }
    }

    fn x(&self, tv: f64) -> f64 {
        self.l + (tv.clamp(0.0, self.xmax) / self.xmax) * self.pw
    }

    fn y(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo) / self.lo).ln() / (self.hi / self.lo).ln()
        } else {
            v / self.hi
        };
        self.t + self.ph - f.clamp(0.0, 1.0) * self.ph
    }

    fn y_ticks(&self) -> Vec<f64> {
        let (lo, hi) = (self.lo, self.hi);
        if !self.log {
            let step = nice_step(hi / 5.0);
            return (0..)
                .map(|k| k as f64 * step)
                .take_while(|v| *v <= hi)
                .collect();
        }
        let mut v = Vec::new();
        let mut dec = 10f64.powf(lo.log10().floor());
        while dec <= hi {
            for m in [1.0, 2.0, 5.0] {
                let tv = m * dec;
                if tv >= lo && tv <= hi {
                    v.push(tv);
                }
            }
            dec *= 10.0;
        }
        v
    }
}

/// The whole image.
pub fn svg(name: &str, duration: f64, samples: &[Sample], marks: &[Mark]) -> String {
    let p = Plot::new(duration, samples);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="14">testnet {}: measured RTT and client request latency (ms{}) over scenario time (s)</text>"#,
        p.l,
        esc(name),
        if p.log { ", log scale" } else { "" }
    );
    axes(&mut s, &p);
    event_lines(&mut s, &p, marks);
    let series = series(&mut s, &p, samples);
    bottom_marks(&mut s, &p, marks);
    legend(&mut s, &p, series);
    s.push_str("</svg>\n");
    s
}

/// Grid lines and labels of both axes, and the frame.
fn axes(s: &mut String, p: &Plot) {
    let (l, t, pw, ph) = (p.l, p.t, p.pw, p.ph);
    for v in p.y_ticks() {
        let yy = p.y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            l + pw,
            l - 6.0,
            yy + 4.0,
            trim_num(v)
        );
    }
    let xstep = nice_step(p.xmax / 10.0);
    let mut tv = 0.0;
    while tv <= p.xmax + 1e-9 {
        let xx = p.x(tv);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{t}" x2="{xx:.1}" y2="{:.1}" stroke="#f4f4f4"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            t + ph,
            t + ph + 14.0,
            trim_num(tv)
        );
        tv += xstep;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
}

/// Events and migrations; their labels go below the plot, rotated, and
/// pushed right when they would overlap the previous one.
fn event_lines(s: &mut String, p: &Plot, marks: &[Mark]) {
    let (t, ph) = (p.t, p.ph);
    let mut last_label_x = f64::NEG_INFINITY;
    for mk in marks {
        let xx = p.x(mk.t);
        let (color, dash, width) = match mk.kind {
            MarkKind::Event => ("#888", "4,3", 1.0),
            MarkKind::Migration => ("#ff7f0e", "", 2.0),
            _ => continue,
        };
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{t}" x2="{xx:.1}" y2="{:.1}" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#,
            t + ph
        );
        let lx = xx.max(last_label_x + LABEL_GAP);
        last_label_x = lx;
        let ly = t + ph + 24.0;
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(40 {lx:.1} {ly:.1})" fill="{color}">{}</text>"#,
            esc(&truncate(&mk.label, LABEL_CHARS))
        );
    }
}

/// Each series as a line (client latency solid, the rest dashed) with its
/// legend entry; returns how many there are.
fn series(s: &mut String, p: &Plot, samples: &[Sample]) -> usize {
    let mut names: Vec<&str> = samples.iter().map(|s| s.series.as_str()).collect();
    names.sort();
    names.dedup();
    let right = p.l + p.pw;
    for (k, name) in names.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let pts: Vec<String> = samples
            .iter()
            .filter(|x| x.series == *name)
            .map(|x| format!("{:.1},{:.1}", p.x(x.t), p.y(x.value)))
            .collect();
        let dash = if name.starts_with("client ") {
            ""
        } else {
            "5,2"
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = p.t + 10.0 + k as f64 * LEGEND_ROW;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            right + 12.0,
            right + 34.0,
            right + 40.0,
            ly + 4.0,
            esc(name)
        );
    }
    names.len()
}

/// Client errors and verdicts along the bottom edge.
fn bottom_marks(s: &mut String, p: &Plot, marks: &[Mark]) {
    let yy = p.t + p.ph;
    for mk in marks {
        let xx = p.x(mk.t);
        let label = esc(&mk.label);
        match mk.kind {
            MarkKind::ClientError => {
                let _ = writeln!(
                    s,
                    r#"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{yy:.1}" stroke="red" stroke-width="2"><title>{label}</title></line>"#,
                    yy - 10.0
                );
            }
            MarkKind::Pass | MarkKind::Fail => {
                let (c, word) = if mk.kind == MarkKind::Pass {
                    ("#2ca02c", "PASS")
                } else {
                    ("#d62728", "FAIL")
                };
                let _ = writeln!(
                    s,
                    r#"<path d="M{xx:.1},{:.1} l-4,-7 l8,0 z" fill="{c}"><title>{word} {label}</title></path>"#,
                    yy - 1.0
                );
            }
            _ => {}
        }
    }
}

/// What the marks' colours mean, below the series' legend.
fn legend(s: &mut String, p: &Plot, series: usize) {
    let right = p.l + p.pw;
    let ly = p.t + 10.0 + series as f64 * LEGEND_ROW + 10.0;
    let legend = [
        ("#888", "event"),
        ("#ff7f0e", "vessel moved"),
        ("red", "client error"),
        ("#2ca02c", "assertion passed"),
        ("#d62728", "assertion failed"),
    ];
    for (k, (c, what)) in legend.iter().enumerate() {
        let yy = ly + k as f64 * LEGEND_ROW;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{:.1}" y="{:.1}">{what}</text>"#,
            right + 12.0,
            yy - 5.0,
            right + 40.0,
            yy + 4.0
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The largest 1, 2 or 5 × 10^k at or below `v`.
fn floor_125(v: f64) -> f64 {
    let dec = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| m * dec)
        .find(|c| *c <= v)
        .unwrap_or(dec)
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

fn trim_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_series_marks_and_escapes() {
        let samples = vec![
            Sample {
                t: 0.5,
                series: "rtt a→b".into(),
                value: 20.0,
            },
            Sample {
                t: 1.5,
                series: "rtt a→b".into(),
                value: 21.0,
            },
            Sample {
                t: 1.0,
                series: "client <k>".into(),
                value: 80.0,
            },
        ];
        let marks = vec![
            Mark {
                t: 1.0,
                kind: MarkKind::Event,
                label: "link a–b: latency 40 ms".into(),
            },
            Mark {
                t: 2.0,
                kind: MarkKind::Migration,
                label: "v: a → d".into(),
            },
            Mark {
                t: 2.5,
                kind: MarkKind::Fail,
                label: "assert[0]".into(),
            },
        ];
        let s = svg("t", 3.0, &samples, &marks);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("client &lt;k&gt;"));
        assert!(s.contains("stroke=\"#ff7f0e\""));
        assert_eq!(s.matches("<polyline").count(), 2);
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(3.3), 5.0);
        assert_eq!(nice_step(0.9), 1.0);
        assert_eq!(nice_step(17.0), 20.0);
    }
}
