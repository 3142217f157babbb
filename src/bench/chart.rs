//! `corral bench chart`: a horizontal grouped bar chart of benchmark throughput, written as a
//! PNG, so `bench/compare.sh` can draw Corral against Apache ZooKeeper without any plotting
//! package, system library or font file on the machine.
//!
//! The input is one JSON file listing runs, each the report `corral bench --json` wrote, tagged
//! with the setup it ran in and the server it ran against:
//!
//! ```json
//! { "title": "...", "subtitle": "...",
//!   "runs": [ { "setup": "standalone", "server": "Corral", "workload": "get",
//!               "report": { "ops_per_sec": 123456.7, "aborted": null, ... } } ] }
//! ```
//!
//! Every setup becomes a panel (side by side), every workload a row of bars, every server a bar
//! colour. A run whose report is missing (the benchmark failed) shows as "failed". With exactly
//! two servers a right-hand column gives the ratio of the first to the second.
//!
//! Drawing is done by hand into an RGB buffer: rectangles and text in the public-domain 8×8
//! bitmap font of the `font8x8` crate, scaled by whole pixels; `png` encodes the buffer.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use font8x8::UnicodeFonts;
use serde::Deserialize;
use thiserror::Error;

/// Arguments of `corral bench chart`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChartArgs {
    /// The runs to draw (JSON: {"title", "subtitle", "runs": [{"setup", "server", "workload",
    /// "report": <corral bench --json output> | null}]}).
    #[arg(long)]
    pub input: PathBuf,
    /// The PNG to write.
    #[arg(long)]
    pub output: PathBuf,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1600, value_parser = clap::value_parser!(u32).range(400..=8000))]
    pub width: u32,
}

/// Why a chart could not be drawn.
#[derive(Debug, Error)]
pub enum ChartError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a chart input: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{0} lists no runs")]
    Empty(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode the PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// The chart's input file.
#[derive(Debug, Clone, Deserialize)]
pub struct ChartInput {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub subtitle: String,
    pub runs: Vec<ChartRun>,
}

/// One benchmark run.
#[derive(Debug, Clone, Deserialize)]
pub struct ChartRun {
    pub setup: String,
    pub server: String,
    /// The workload; taken from the report when absent.
    #[serde(default)]
    pub workload: Option<String>,
    /// What `corral bench --json` wrote, or null when the run failed.
    #[serde(default)]
    pub report: Option<RunReport>,
}

/// The fields of a `corral bench --json` report the chart uses.
#[derive(Debug, Clone, Deserialize)]
pub struct RunReport {
    pub workload: String,
    pub ops_per_sec: f64,
    #[serde(default)]
    pub aborted: Option<String>,
}

/// A measured value: throughput, and whether the run stopped early.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Value {
    ops_per_sec: f64,
    aborted: bool,
}

/// The input arranged for drawing: panels × workloads × servers.
#[derive(Debug, Clone, PartialEq)]
struct Grid {
    setups: Vec<String>,
    servers: Vec<String>,
    workloads: Vec<String>,
    /// `values[panel][workload][server]`.
    values: Vec<Vec<Vec<Option<Value>>>>,
}

fn index_of(list: &mut Vec<String>, name: &str) -> usize {
    match list.iter().position(|s| s == name) {
        Some(i) => i,
        None => {
            list.push(name.to_string());
            list.len() - 1
        }
    }
}

impl Grid {
    /// Orders setups, servers and workloads by first appearance; a later run of the same
    /// (setup, server, workload) replaces an earlier one.
    fn from_input(input: &ChartInput) -> Grid {
        let mut g = Grid {
            setups: Vec::new(),
            servers: Vec::new(),
            workloads: Vec::new(),
            values: Vec::new(),
        };
        let mut cells = Vec::new();
        for run in &input.runs {
            let workload = match (&run.workload, &run.report) {
                (Some(w), _) => w.clone(),
                (None, Some(r)) => r.workload.clone(),
                (None, None) => "?".to_string(),
            };
            let p = index_of(&mut g.setups, &run.setup);
            let s = index_of(&mut g.servers, &run.server);
            let w = index_of(&mut g.workloads, &workload);
            let v = run.report.as_ref().map(|r| Value {
                ops_per_sec: if r.ops_per_sec.is_finite() {
                    r.ops_per_sec.max(0.0)
                } else {
                    0.0
                },
                aborted: r.aborted.is_some(),
            });
            cells.push((p, w, s, v));
        }
        g.values = vec![vec![vec![None; g.servers.len()]; g.workloads.len()]; g.setups.len()];
        for (p, w, s, v) in cells {
            g.values[p][w][s] = v;
        }
        g
    }
}

/// Reads the input, draws the chart and writes the PNG.
pub fn run(args: ChartArgs) -> Result<(), ChartError> {
    let shown = |p: &Path| p.display().to_string();
    let text = std::fs::read_to_string(&args.input).map_err(|source| ChartError::Read {
        path: shown(&args.input),
        source,
    })?;
    let input: ChartInput = serde_json::from_str(&text).map_err(|source| ChartError::Parse {
        path: shown(&args.input),
        source,
    })?;
    if input.runs.is_empty() {
        return Err(ChartError::Empty(shown(&args.input)));
    }
    let canvas = draw(&input, args.width);
    let png = canvas.encode_png()?;
    std::fs::write(&args.output, png).map_err(|source| ChartError::Write {
        path: shown(&args.output),
        source,
    })?;
    // What was written is already on disk: a failure to say so is not an error.
    let _ = writeln!(
        std::io::stdout(),
        "wrote {} ({}x{})",
        args.output.display(),
        canvas.width,
        canvas.height
    );
    Ok(())
}

// ---- drawing -------------------------------------------------------------------------------

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [34, 34, 34];
const MUTED: Rgb = [110, 110, 110];
const GRID: Rgb = [225, 225, 225];
const FAILED: Rgb = [200, 30, 30];
/// Series colours: Corral first, Apache ZooKeeper second, then spares.
const SERIES: [Rgb; 5] = [
    [230, 110, 20],
    [40, 100, 170],
    [110, 160, 40],
    [140, 90, 170],
    [120, 120, 120],
];

/// Glyph cell size of the bitmap font, in pixels at scale 1.
const GLYPH: u32 = 8;

/// An RGB image being drawn.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            pixels: WHITE.repeat(width as usize * height as usize),
        }
    }

    /// Fills a rectangle, clipped to the image.
    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        let x0 = x.clamp(0, self.width as i64) as usize;
        let x1 = (x + w).clamp(0, self.width as i64) as usize;
        let y0 = y.clamp(0, self.height as i64) as usize;
        let y1 = (y + h).clamp(0, self.height as i64) as usize;
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        for row in y0..y1 {
            let start = (row * self.width as usize + x0) * 3;
            let end = (row * self.width as usize + x1) * 3;
            for px in self.pixels[start..end].chunks_exact_mut(3) {
                px.copy_from_slice(&c);
            }
        }
    }

    /// Draws text with its top-left corner at (x, y); characters the font lacks show as '?'.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: u32, c: Rgb) {
        let step = (GLYPH * scale) as i64;
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::LATIN_FONTS.get(ch))
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            let gx = x + i as i64 * step;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.rect(
                            gx + col * scale as i64,
                            y + row as i64 * scale as i64,
                            scale as i64,
                            scale as i64,
                            c,
                        );
                    }
                }
            }
        }
    }

    fn text_width(s: &str, scale: u32) -> i64 {
        (s.chars().count() as u32 * GLYPH * scale) as i64
    }

    fn text_right(&mut self, right: i64, y: i64, s: &str, scale: u32, c: Rgb) {
        self.text(right - Self::text_width(s, scale), y, s, scale, c);
    }

    fn text_center(&mut self, center: i64, y: i64, s: &str, scale: u32, c: Rgb) {
        self.text(center - Self::text_width(s, scale) / 2, y, s, scale, c);
    }

    /// The image as PNG bytes.
    pub fn encode_png(&self) -> Result<Vec<u8>, png::EncodingError> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width, self.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&self.pixels)?;
        writer.finish()?;
        Ok(out)
    }

    #[cfg(test)]
    fn pixel(&self, x: u32, y: u32) -> Rgb {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// A compact label for a rate: 950, 12.3k, 736k, 1.25M.
fn si(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if v >= 1e5 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1e3 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else {
        format!("{v:.0}")
    }
}

/// Axis step and maximum: 1, 2, 2.5 or 5 times a power of ten, at most `steps` steps.
fn axis(max: f64, steps: u32) -> (f64, f64) {
    let steps = f64::from(steps.max(1));
    if max <= 0.0 || !max.is_finite() {
        return (1.0, steps);
    }
    let raw = max / steps;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil().max(1.0) * step)
}

/// Ratio label of the first server to the second, and whether the ratio is below one.
fn ratio(row: &[Option<Value>]) -> Option<(String, bool)> {
    match row {
        [Some(a), Some(b), ..] if b.ops_per_sec > 0.0 => {
            let r = a.ops_per_sec / b.ops_per_sec;
            let label = if r >= 10.0 {
                format!("{r:.0}x")
            } else {
                format!("{r:.1}x")
            };
            Some((label, r < 1.0))
        }
        _ => None,
    }
}

/// Draws the whole chart.
pub fn draw(input: &ChartInput, width: u32) -> Canvas {
    let g = Grid::from_input(input);
    let n_servers = g.servers.len().max(1) as i64;
    let bar_h: i64 = 20;
    let row_gap: i64 = 16;
    let row_h = n_servers * bar_h + row_gap;
    let margin: i64 = 24;
    let title_h: i64 = if input.subtitle.is_empty() { 48 } else { 72 };
    let legend_h: i64 = 36;
    let panel_title_h: i64 = 32;
    let axis_h: i64 = 36;
    let plot_h = g.workloads.len() as i64 * row_h;
    let height = margin + title_h + legend_h + panel_title_h + plot_h + axis_h + margin;
    let mut c = Canvas::new(width, height.clamp(100, 20_000) as u32);

    // Title, subtitle, legend.
    c.text(margin, margin, &input.title, 3, INK);
    if !input.subtitle.is_empty() {
        c.text(margin, margin + 34, &input.subtitle, 2, MUTED);
    }
    let mut lx = margin;
    let ly = margin + title_h;
    for (i, name) in g.servers.iter().enumerate() {
        c.rect(lx, ly, 28, 16, SERIES[i % SERIES.len()]);
        c.text(lx + 36, ly, name, 2, INK);
        lx += 36 + Canvas::text_width(name, 2) + 40;
    }
    if g.servers.len() == 2 {
        let s = format!("ratio = {} / {}", g.servers[0], g.servers[1]);
        c.text(lx, ly, &s, 2, MUTED);
    }

    // Panels side by side.
    let n_panels = g.setups.len().max(1) as i64;
    let panel_gap: i64 = 40;
    let panel_w = (width as i64 - 2 * margin - (n_panels - 1) * panel_gap) / n_panels;
    let label_w = g
        .workloads
        .iter()
        .map(|w| Canvas::text_width(w, 2))
        .max()
        .unwrap_or(0)
        + 12;
    let ratio_w = if g.servers.len() == 2 { 80 } else { 0 };
    let value_room: i64 = 120;
    let top = margin + title_h + legend_h + panel_title_h;
    for (p, setup) in g.setups.iter().enumerate() {
        let px = margin + p as i64 * (panel_w + panel_gap);
        let x0 = px + label_w;
        let bars_w = (panel_w - label_w - ratio_w - value_room).max(40);
        c.text(
            px,
            top - panel_title_h + 4,
            &format!("{setup} (ops/s)"),
            2,
            INK,
        );
        if ratio_w > 0 {
            c.text_right(px + panel_w, top - panel_title_h + 4, "ratio", 2, MUTED);
        }
        let max = g.values[p]
            .iter()
            .flatten()
            .flatten()
            .map(|v| v.ops_per_sec)
            .fold(0.0, f64::max);
        // Tick labels are up to five characters (80 px) wide.
        let (step, axis_max) = axis(max, (bars_w / 110).clamp(2, 8) as u32);
        let x_of = |v: f64| x0 + ((v / axis_max) * bars_w as f64).round() as i64;
        // Grid lines and tick labels.
        let mut t = 0.0;
        while t <= axis_max * 1.0001 {
            let x = x_of(t);
            c.rect(x, top - 4, 1, plot_h + 8, GRID);
            c.text_center(x, top + plot_h + 10, &si(t), 2, MUTED);
            t += step;
        }
        c.rect(x0, top - 4, 2, plot_h + 8, INK);
        // Rows.
        for (w, workload) in g.workloads.iter().enumerate() {
            let ry = top + w as i64 * row_h + row_gap / 2;
            let row = &g.values[p][w];
            c.text_right(x0 - 12, ry + (n_servers * bar_h) / 2 - 8, workload, 2, INK);
            for (s, v) in row.iter().enumerate() {
                let by = ry + s as i64 * bar_h;
                match v {
                    Some(v) => {
                        let end = x_of(v.ops_per_sec);
                        c.rect(
                            x0 + 2,
                            by + 1,
                            end - x0 - 2,
                            bar_h - 2,
                            SERIES[s % SERIES.len()],
                        );
                        let mut label = si(v.ops_per_sec);
                        if v.aborted {
                            label.push_str(" (aborted)");
                        }
                        c.text(end + 6, by + (bar_h - 16) / 2, &label, 2, INK);
                    }
                    None => c.text(x0 + 8, by + (bar_h - 16) / 2, "failed", 2, FAILED),
                }
            }
            if ratio_w > 0 {
                if let Some((r, below_one)) = ratio(row) {
                    let colour = if below_one { FAILED } else { INK };
                    c.text_right(
                        px + panel_w,
                        ry + (n_servers * bar_h) / 2 - 8,
                        &r,
                        2,
                        colour,
                    );
                }
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ChartInput {
        serde_json::from_str(
            r#"{"title": "Throughput", "subtitle": "QUICK run",
                "runs": [
                  {"setup": "standalone", "server": "Corral", "report": {"workload": "get", "ops_per_sec": 700000.0, "aborted": null, "extra": 1}},
                  {"setup": "standalone", "server": "ZooKeeper", "workload": "get", "report": {"workload": "get", "ops_per_sec": 140000.0}},
                  {"setup": "standalone", "server": "Corral", "workload": "set", "report": null},
                  {"setup": "ensemble", "server": "Corral", "workload": "get", "report": {"workload": "get", "ops_per_sec": 0.0}},
                  {"setup": "ensemble", "server": "ZooKeeper", "workload": "set", "report": {"workload": "set", "ops_per_sec": 9000.5, "aborted": "stall"}}
                ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn grid_orders_by_first_appearance() {
        let g = Grid::from_input(&input());
        assert_eq!(g.setups, ["standalone", "ensemble"]);
        assert_eq!(g.servers, ["Corral", "ZooKeeper"]);
        assert_eq!(g.workloads, ["get", "set"]);
        assert_eq!(g.values[0][0][0].map(|v| v.ops_per_sec), Some(700000.0));
        assert_eq!(g.values[0][1][0], None);
        assert_eq!(g.values[0][1][1], None);
        assert_eq!(
            g.values[1][1][1],
            Some(Value {
                ops_per_sec: 9000.5,
                aborted: true
            })
        );
    }

    #[test]
    fn labels() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(950.4), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(20_000.0), "20k");
        assert_eq!(si(735_961.0), "736k");
        assert_eq!(si(1_250_000.0), "1.25M");
        assert_eq!(si(2_000_000.0), "2M");
        let row = |a: f64, b: f64| {
            [
                Some(Value {
                    ops_per_sec: a,
                    aborted: false,
                }),
                Some(Value {
                    ops_per_sec: b,
                    aborted: false,
                }),
            ]
        };
        assert_eq!(ratio(&row(300.0, 100.0)), Some(("3.0x".to_string(), false)));
        assert_eq!(ratio(&row(3000.0, 100.0)), Some(("30x".to_string(), false)));
        assert_eq!(ratio(&row(90.0, 100.0)), Some(("0.9x".to_string(), true)));
        assert_eq!(ratio(&row(1.0, 0.0)), None);
        assert_eq!(ratio(&[None, None]), None);
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(axis(735_961.0, 5), (200_000.0, 800_000.0));
        assert_eq!(axis(735_961.0, 3), (250_000.0, 750_000.0));
        assert_eq!(axis(100.0, 5), (20.0, 100.0));
        assert_eq!(axis(11.0, 5), (2.5, 12.5));
        assert_eq!(axis(0.0, 5), (1.0, 5.0));
    }

    #[test]
    fn draws_bars_and_encodes() {
        let c = draw(&input(), 1000);
        assert_eq!(c.width, 1000);
        // Some pixels carry each series colour.
        let has = |col: Rgb| (0..c.height).any(|y| (0..c.width).any(|x| c.pixel(x, y) == col));
        assert!(has(SERIES[0]) && has(SERIES[1]) && has(FAILED));
        let png = c.encode_png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{\"runs\": 3}").unwrap();
        let args = |input: PathBuf| ChartArgs {
            input,
            output: dir.join("out.png"),
            width: 800,
        };
        assert!(matches!(run(args(bad)), Err(ChartError::Parse { .. })));
        assert!(matches!(
            run(args(dir.join("missing.json"))),
            Err(ChartError::Read { .. })
        ));
        let empty = dir.join("empty.json");
        std::fs::write(&empty, "{\"runs\": []}").unwrap();
        assert!(matches!(run(args(empty)), Err(ChartError::Empty(_))));
    }
}
