//! `--plot FILE.svg`: the latency distribution of every transport, one chart per payload size
//! (stacked in one file), on log scales: x is the percentile as `1 / (1 - q)` (so 90 %, 99 %,
//! 99.9 % are evenly spaced, as in HdrHistogram's plots), y is one-way latency in ns.

use std::path::Path;

use plotters::prelude::*;

use super::Transport;
use super::report::{Machine, Measurement, size};

/// Height of each payload size's chart, in pixels.
const CHART_HEIGHT: u32 = 480;
/// Points drawn per curve.
const POINTS: u32 = 400;

/// Draws the SVG to `path`.
pub fn draw(path: &Path, measurements: &[Measurement], machine: &Machine) -> Result<(), String> {
    let mut payloads: Vec<u64> = measurements.iter().map(|curve| curve.payload).collect();
    payloads.dedup();
    let height = CHART_HEIGHT * payloads.len().max(1) as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    for (area, &payload) in root.split_evenly((payloads.len().max(1), 1)).iter().zip(&payloads) {
        let curves: Vec<&Measurement> =
            measurements.iter().filter(|curve| curve.payload == payload).collect();
        chart(area, payload, &curves, machine).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Each transport's colour: the baselines in muted tones, shmlane's transports in strong ones.
fn color(transport: Transport) -> RGBAColor {
    let (red, green, blue) = match transport {
        Transport::Cacheline => (0, 0, 0),
        Transport::CachelineBlock => (90, 90, 90),
        Transport::Futex => (140, 140, 140),
        Transport::Pipe => (166, 118, 29),
        Transport::Uds => (102, 166, 30),
        Transport::Tcp => (231, 138, 195),
        Transport::ShmlaneSpsc => (31, 119, 180),
        Transport::ShmlanePubsub => (214, 39, 40),
        Transport::ShmlanePubsubBlock => (140, 20, 20),
        Transport::ShmlaneBlocking => (148, 103, 189),
        Transport::ShmlanePubsubBatch => (255, 127, 14),
    };
    RGBColor(red, green, blue).to_rgba()
}

/// `1 / (1 - q)` for the largest quantile `q` a histogram of `values` values resolves.
fn x_limit(values: u64) -> f64 {
    (values.max(10) as f64).min(1e6)
}

/// A percentile label for x = `1 / (1 - q)`: 1 → `0%`, 10 → `90%`, 1000 → `99.9%`.
fn percentile(x: f64) -> String {
    let percent = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10() - 2.0).ceil().max(0.0) as usize;
    format!("{percent:.decimals$}%")
}

/// The chart of one payload size: a curve per transport, with a legend.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    payload: u64,
    curves: &[&Measurement],
    machine: &Machine,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let x_max = curves.iter().map(|curve| x_limit(curve.histogram.len())).fold(10.0, f64::max);
    let y_min = curves.iter().map(|curve| curve.one_way(0.0)).fold(f64::MAX, f64::min).max(1.0);
    let y_max = curves.iter().map(|curve| curve.max()).fold(y_min * 10.0, f64::max);
    let caption = format!(
        "one-way latency, {} payload ({}, CPUs {} and {})",
        size(payload),
        machine.cpu,
        machine.cores[0],
        machine.cores[1]
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max).log_scale(), (y_min / 1.5..y_max * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ns")
        .x_label_formatter(&|x| percentile(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for curve in curves {
        let color = color(curve.transport);
        let limit = x_limit(curve.histogram.len());
        let points = (0..=POINTS).map(|point| {
            let x = limit.powf(f64::from(point) / f64::from(POINTS));
            (x, curve.one_way(1.0 - 1.0 / x).max(y_min / 1.5))
        });
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(curve.transport.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_labelled_with_their_nines() {
        assert_eq!(percentile(1.0), "0%");
        assert_eq!(percentile(10.0), "90%");
        assert_eq!(percentile(100.0), "99%");
        assert_eq!(percentile(1000.0), "99.9%");
        assert_eq!(percentile(10000.0), "99.99%");
    }
}
