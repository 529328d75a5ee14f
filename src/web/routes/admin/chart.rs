//! The usage chart the key page and the overview draw: stacked bars of allowed and refused
//! requests, computed here in SVG coordinates so the template only places them (no script, no
//! external asset: it reads the same without JavaScript).

use chrono::Timelike;

use crate::analytics::{Point, Span};

/// One bucket's bar.
pub struct ChartBar {
    pub x: String,
    pub width: String,
    pub allowed_y: u32,
    pub allowed_h: u32,
    pub rejected_y: u32,
    pub rejected_h: u32,
    pub label: String,
    pub label_x: String,
    pub title: String,
}

pub struct Chart {
    pub bars: Vec<ChartBar>,
    pub max: i64,
    pub empty: bool,
    pub span: Span,
    /// The spans to switch to: query value, label, whether it is this one.
    pub spans: Vec<(&'static str, &'static str, bool)>,
    pub caption: String,
}

const HEIGHT: u32 = 140;
/// The plot's left edge and width in the 720-wide view box.
const LEFT: f64 = 40.0;
const WIDTH: f64 = 672.0;

impl Chart {
    pub fn of(points: &[Point], span: Span) -> Chart {
        let max = points.iter().map(|p| p.allowed + p.rejected).max().unwrap_or(0);
        let scale = |n: i64| {
            if max == 0 {
                0
            } else {
                ((n as f64 / max as f64) * f64::from(HEIGHT)).round() as u32
            }
        };
        let step = WIDTH / points.len().max(1) as f64;
        let bars = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (allowed_h, rejected_h) = (scale(p.allowed), scale(p.rejected));
                let x = LEFT + i as f64 * step;
                let (label, when) = labels(p, span, i);
                ChartBar {
                    x: format!("{x:.1}"),
                    width: format!("{:.1}", step * 0.78),
                    allowed_y: HEIGHT + 10 - allowed_h,
                    allowed_h,
                    rejected_y: HEIGHT + 10 - allowed_h - rejected_h,
                    rejected_h,
                    label,
                    label_x: format!("{:.1}", x + step * 0.39),
                    title: format!("{when}: {} allowed, {} rejected", p.allowed, p.rejected),
                }
            })
            .collect();
        Chart {
            bars,
            max,
            empty: max == 0,
            span,
            spans: Span::ALL
                .iter()
                .map(|s| (s.as_str(), s.label(), *s == span))
                .collect(),
            caption: format!(
                "Requests per {}, allowed and rejected, last {}",
                if span.hourly() { "hour" } else { "day" },
                span.label()
            ),
        }
    }
}

/// The axis label (only every few buckets) and the bar's full time, in UTC.
fn labels(p: &Point, span: Span, i: usize) -> (String, String) {
    match span {
        Span::Day => {
            let hour = p.start.hour();
            let label = if i.is_multiple_of(3) {
                format!("{hour:02}:00")
            } else {
                String::new()
            };
            (label, format!("{} {hour:02}:00 UTC", p.start.format("%Y-%m-%d")))
        }
        Span::Week => (
            p.start.format("%a %d").to_string(),
            p.start.format("%Y-%m-%d").to_string(),
        ),
        Span::Month => {
            let label = if i.is_multiple_of(5) {
                p.start.format("%b %d").to_string()
            } else {
                String::new()
            };
            (label, p.start.format("%Y-%m-%d").to_string())
        }
    }
}
