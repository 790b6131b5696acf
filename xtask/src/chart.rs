//! `cargo xtask bench-chart [--run]`: docs/benchmarks.svg, weir beside Go
//! and hand-written tokio per pattern, from the output of
//! `benches/go/run.sh`.
//!
//! The figures are the raw lines `benches/go/run.sh` collects (`<side>
//! <pattern> <ns per item>`, several runs of a side possible; the lowest
//! figure of each side and pattern is drawn, as the script's table keeps
//! it), saved in docs/benchmarks-vs-go.txt. `--run` first runs the script
//! (it needs `go`; `apt-get install golang-go`) and saves its lines there;
//! without it the saved file is drawn again.
//!
//! The chart is drawn with plotters' SVG backend alone: text is SVG
//! `<text>` in the viewer's sans-serif font, so no font library is needed
//! to build or run this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use plotters::prelude::*;

/// The saved figures.
pub(crate) const RESULTS: &str = "docs/benchmarks-vs-go.txt";
/// The chart.
pub(crate) const CHART: &str = "docs/benchmarks.svg";

/// The patterns drawn, in order, with their labels: the ones Go has too.
const PATTERNS: &[(&str, &str)] = &[
    ("pool_w2", "pool, 2 workers"),
    ("pool_w4", "pool, 4 workers"),
    ("pool_w8", "pool, 8 workers"),
    ("pipeline_3_stage", "3-stage pipeline"),
    ("fan_in_4", "fan-in, 4 to 1"),
    ("spawn_wait_200k", "spawn + wait"),
];

/// The sides drawn, in order, with their labels and colours.
const SIDES: &[(&str, &str, RGBColor)] = &[
    ("weir", "weir", RGBColor(0x1f, 0x77, 0xb4)),
    ("go", "Go", RGBColor(0x2c, 0xa0, 0x2c)),
    ("hand", "hand-written tokio", RGBColor(0xff, 0x7f, 0x0e)),
];

type Figures = BTreeMap<(String, String), f64>;

/// Runs the task: `args` are what follows `bench-chart`.
pub(crate) fn bench_chart(root: &Path, args: &[String]) -> Result<(), String> {
    let results = root.join(RESULTS);
    match args {
        [] => {}
        [run] if run == "--run" => run_benches(root, &results)?,
        _ => return Err("usage: cargo xtask bench-chart [--run]".to_owned()),
    }
    let text = std::fs::read_to_string(&results)
        .map_err(|e| format!("cannot read {}: {e}", results.display()))?;
    let figures = parse(&text)?;
    let chart = root.join(CHART);
    draw(&figures, &chart, &provenance(&text))?;
    println!("xtask: drew {} from {}", chart.display(), results.display());
    Ok(())
}

/// Runs `benches/go/run.sh`, saving its raw lines (with the date) in
/// `results`.
fn run_benches(root: &Path, results: &Path) -> Result<(), String> {
    let raw = std::env::temp_dir().join(format!("weir-vs-go-{}.txt", std::process::id()));
    let status = Command::new("bash")
        .arg(root.join("benches/go/run.sh"))
        .env("VS_GO_RESULTS", &raw)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run benches/go/run.sh: {e}"))?;
    if !status.success() {
        return Err(format!("benches/go/run.sh failed: {status}"));
    }
    let lines = std::fs::read_to_string(&raw)
        .map_err(|e| format!("benches/go/run.sh left no results (is `go` installed?): {e}"))?;
    let _ = std::fs::remove_file(&raw);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let header = format!(
        "# benches/go/run.sh, {} (UTC); load average after the run: {load}\n\
         # <side> <pattern> <ns per item>; Go ran before and after the Rust side\n",
        today()
    );
    std::fs::write(results, header + &lines)
        .map_err(|e| format!("cannot write {}: {e}", results.display()))
}

/// The `(side, pattern)` figures of the saved lines, the lowest of each.
fn parse(text: &str) -> Result<Figures, String> {
    let mut figures = Figures::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [side, pattern, ns] = fields[..] else {
            return Err(format!(
                "{RESULTS}:{}: not `<side> <pattern> <ns>`: {line}",
                n + 1
            ));
        };
        let ns: f64 = ns
            .parse()
            .map_err(|e| format!("{RESULTS}:{}: {ns}: {e}", n + 1))?;
        let best = figures
            .entry((side.to_owned(), pattern.to_owned()))
            .or_insert(ns);
        *best = best.min(ns);
    }
    for (pattern, _) in PATTERNS {
        for (side, _, _) in SIDES {
            if !figures.contains_key(&(side.to_string(), pattern.to_string())) {
                return Err(format!("{RESULTS} has no figure for {side} {pattern}"));
            }
        }
    }
    Ok(figures)
}

/// The first comment line of the saved figures: when they were measured.
fn provenance(text: &str) -> String {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix('#'))
        .map_or_else(String::new, |l| l.trim().to_owned())
}

fn draw(figures: &Figures, path: &PathBuf, note: &str) -> Result<(), String> {
    draw_svg(figures, path, note).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw_svg(
    figures: &Figures,
    path: &PathBuf,
    note: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(490);
    let figure = |side: &str, pattern: &str| figures[&(side.to_owned(), pattern.to_owned())];
    let max = PATTERNS
        .iter()
        .flat_map(|(p, _)| SIDES.iter().map(move |(s, _, _)| figure(s, p)))
        .fold(1.0_f64, f64::max);
    let groups = PATTERNS.len() as f64;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "weir, Go and hand-written tokio: ns per item (lower is better; log scale)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..groups, (5.0..max * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ns per item")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;

    let width = 0.8 / SIDES.len() as f64;
    for (j, (side, label, colour)) in SIDES.iter().enumerate() {
        let bars = PATTERNS.iter().enumerate().map(|(i, (pattern, _))| {
            let x0 = i as f64 + 0.1 + j as f64 * width;
            Rectangle::new(
                [(x0, 5.0), (x0 + width * 0.92, figure(side, pattern))],
                colour.filled(),
            )
        });
        chart
            .draw_series(bars)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
        // Each bar's figure above it.
        for (i, (pattern, _)) in PATTERNS.iter().enumerate() {
            let v = figure(side, pattern);
            let x = i as f64 + 0.1 + (j as f64 + 0.46) * width;
            let (px, py) = chart.backend_coord(&(x, v));
            top.draw(&Text::new(
                format!("{v:.0}"),
                (px - 8, py - 14),
                ("sans-serif", 11).into_font(),
            ))?;
        }
    }
    // The pattern names under their groups.
    for (i, (_, name)) in PATTERNS.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 5.0));
        let w = i32::try_from(name.len()).unwrap_or(0) * 7 / 2;
        top.draw(&Text::new(
            (*name).to_owned(),
            (px - w, py + 10),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    bottom.draw(&Text::new(
        format!("{note}. Regenerate: cargo xtask bench-chart --run"),
        (14, 8),
        ("sans-serif", 12)
            .into_font()
            .color(&RGBColor(0x55, 0x55, 0x55)),
    ))?;
    root.present()?;
    Ok(())
}

/// Today's date, `YYYY-MM-DD` (UTC), from the system clock.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# a run\n\
        go pool_w2 46.0\nweir pool_w2 39.0\nhand pool_w2 130.0\n\
        go pool_w4 47.0\nweir pool_w4 40.0\nhand pool_w4 140.0\n\
        go pool_w8 48.0\nweir pool_w8 41.0\nhand pool_w8 150.0\n\
        go pipeline_3_stage 47.0\nweir pipeline_3_stage 36.0\nhand pipeline_3_stage 120.0\n\
        go fan_in_4 26.0\nweir fan_in_4 14.0\nhand fan_in_4 90.0\n\
        go spawn_wait_200k 180.0\nweir spawn_wait_200k 300.0\nhand spawn_wait_200k 470.0\n\
        joinset spawn_wait_200k 800.0\nweir idle_latency_p50 230\n\
        go pool_w2 45.5\n";

    #[test]
    fn keeps_the_lowest_figure_of_each_side_and_pattern() {
        let f = parse(SAMPLE).unwrap();
        assert_eq!(f[&("go".to_owned(), "pool_w2".to_owned())], 45.5);
        assert_eq!(f[&("weir".to_owned(), "fan_in_4".to_owned())], 14.0);
        assert_eq!(provenance(SAMPLE), "a run");
    }

    #[test]
    fn a_missing_figure_or_a_bad_line_is_an_error() {
        let err = parse("weir pool_w2 39.0\n").unwrap_err();
        assert!(err.contains("no figure for go pool_w2"), "{err}");
        let err = parse("weir pool_w2\n").unwrap_err();
        assert!(err.contains("not `<side> <pattern> <ns>`"), "{err}");
    }

    #[test]
    fn draws_an_svg_with_every_pattern_and_side() {
        let path = std::env::temp_dir().join(format!("weir-chart-{}.svg", std::process::id()));
        draw(&parse(SAMPLE).unwrap(), &path, "a run").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        for (_, name) in PATTERNS {
            assert!(svg.contains(name), "{name}");
        }
        for (_, label, _) in SIDES {
            assert!(svg.contains(label), "{label}");
        }
        assert!(svg.contains("\n300\n"), "a bar's figure");
    }

    #[test]
    fn dates() {
        assert!(today().len() == 10 && today().starts_with("20"));
    }
}
