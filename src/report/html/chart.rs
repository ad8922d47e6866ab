//! The memory chart, as inline SVG that needs no script: the server processes' bytes and the data
//! directory's over the run (stacked when the data directory is in RAM, a dashed line when it is on disk),
//! the phases as bands behind them, and a hover title for each point.

use std::fmt::Write as _;

use super::model::{Run, Sample};
use super::page::phase_label;
use super::text::{bytes, escape, seconds};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 22.0;

/// Points of a line: when, and how many bytes.
type Series = Vec<(f64, u64)>;

/// The chart of one run.
pub(crate) struct Memory<'a> {
    run: &'a Run,
    in_ram: bool,
    samples: Vec<Sample>,
    /// The top of the y axis, in bytes.
    top: u64,
}

impl<'a> Memory<'a> {
    /// At most `points` points: the samples thinned to the largest of each stretch.
    pub(crate) fn new(run: &'a Run, in_ram: bool, points: usize) -> Memory<'a> {
        let samples = thin(&run.memory, points);
        let highest = samples
            .iter()
            .map(|s| match in_ram {
                true => s.processes + s.data_dir,
                false => s.processes.max(s.data_dir),
            })
            .max()
            .unwrap_or(0);
        Memory {
            run,
            in_ram,
            samples,
            top: nice_top(highest),
        }
    }

    fn x(&self, at: f64) -> f64 {
        let wall = self.run.wall.max(1e-3);
        LEFT + (at / wall).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: u64) -> f64 {
        let plot = HEIGHT - TOP - BOTTOM;
        HEIGHT - BOTTOM - value as f64 / self.top.max(1) as f64 * plot
    }

    pub(crate) fn svg(&self) -> String {
        let mut svg = format!(
            "<svg id=\"memory-chart\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"the cluster's memory over the run\">\n"
        );
        self.phase_bands(&mut svg);
        self.axes(&mut svg);
        let (lower, upper) = self.series();
        let _ = writeln!(
            svg,
            "<path class=\"m-proc\" d=\"{}\"><title>server processes</title></path>",
            self.area(&lower, None)
        );
        if self.in_ram {
            let _ = writeln!(
                svg,
                "<path class=\"m-data\" d=\"{}\"><title>data directory</title></path>",
                self.area(&upper, Some(&lower))
            );
        } else {
            let _ = writeln!(
                svg,
                "<path class=\"m-data line\" d=\"{}\"><title>data directory (on disk)</title></path>",
                self.line(&upper)
            );
        }
        self.hover_points(&mut svg);
        svg.push_str("</svg>\n");
        svg
    }

    /// The lower and upper series: processes, and processes plus data (in RAM) or data alone (on disk).
    fn series(&self) -> (Series, Series) {
        let lower = self.samples.iter().map(|s| (s.at, s.processes)).collect();
        let upper = self
            .samples
            .iter()
            .map(|s| match self.in_ram {
                true => (s.at, s.processes + s.data_dir),
                false => (s.at, s.data_dir),
            })
            .collect();
        (lower, upper)
    }

    fn line(&self, points: &[(f64, u64)]) -> String {
        let mut d = String::new();
        for (n, (at, value)) in points.iter().enumerate() {
            let command = if n == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{command}{:.1},{:.1}", self.x(*at), self.y(*value));
        }
        d
    }

    /// The area between `upper` and `lower` (the axis when None).
    fn area(&self, upper: &[(f64, u64)], lower: Option<&[(f64, u64)]>) -> String {
        let mut d = self.line(upper);
        match lower {
            Some(lower) => {
                for (at, value) in lower.iter().rev() {
                    let _ = write!(d, "L{:.1},{:.1}", self.x(*at), self.y(*value));
                }
            }
            None => {
                let (first, last) = (upper.first(), upper.last());
                if let (Some((first, _)), Some((last, _))) = (first, last) {
                    let base = self.y(0);
                    let _ = write!(
                        d,
                        "L{:.1},{base:.1}L{:.1},{base:.1}",
                        self.x(*last),
                        self.x(*first)
                    );
                }
            }
        }
        d.push('Z');
        d
    }

    /// The phases behind the data, each named when its band is wide enough for its name.
    fn phase_bands(&self, svg: &mut String) {
        for (name, start, end) in &self.run.phases {
            let (x0, x1) = (self.x(*start), self.x(*end));
            let label = phase_label(name);
            let _ = write!(
                svg,
                "<rect class=\"band ph-{name}\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\"><title>{label} {}</title></rect>",
                (x1 - x0).max(0.5),
                HEIGHT - TOP - BOTTOM,
                seconds(end - start),
            );
            // About 6 units a character at the axis' font size.
            if x1 - x0 >= 6.5 * label.len() as f64 + 4.0 {
                let _ = write!(
                    svg,
                    "<text class=\"band-label\" x=\"{:.1}\" y=\"{}\">{}</text>",
                    x0 + 2.0,
                    TOP - 5.0,
                    escape(label),
                );
            }
            svg.push('\n');
        }
    }

    fn axes(&self, svg: &mut String) {
        for step in 0..=4 {
            let value = self.top / 4 * step;
            let y = self.y(value);
            let _ = writeln!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                bytes(value)
            );
        }
        let ticks = ticks(self.run.wall, 10);
        for at in ticks {
            let x = self.x(at);
            let _ = writeln!(
                svg,
                "<text class=\"axis\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                HEIGHT - 6.0,
                tick_label(at)
            );
        }
    }

    /// An invisible column per point whose title gives its figures: hover without a script.
    fn hover_points(&self, svg: &mut String) {
        let plot = HEIGHT - TOP - BOTTOM;
        for (n, sample) in self.samples.iter().enumerate() {
            let x = self.x(sample.at);
            let next = self
                .samples
                .get(n + 1)
                .map_or(WIDTH - RIGHT, |s| self.x(s.at));
            let _ = write!(
                svg,
                "<rect class=\"hover\" x=\"{x:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot}\"><title>{}: server processes {}, data directory {}</title></rect>",
                (next - x).max(0.5),
                seconds(sample.at),
                bytes(sample.processes),
                bytes(sample.data_dir)
            );
        }
        svg.push('\n');
    }
}

/// At most `points` samples: each stretch of the run keeps its largest, so no peak is lost.
pub(crate) fn thin(samples: &[Sample], points: usize) -> Vec<Sample> {
    if samples.len() <= points || points == 0 {
        return samples.to_vec();
    }
    let per = samples.len().div_ceil(points);
    samples
        .chunks(per)
        .map(|chunk| {
            let mut peak = chunk[0];
            for sample in chunk {
                peak.processes = peak.processes.max(sample.processes);
                peak.data_dir = peak.data_dir.max(sample.data_dir);
            }
            peak
        })
        .collect()
}

/// A round top for the y axis, a tenth above `highest` at least: a power of two of MiB, from 4 MiB, so
/// that its quarters are round too.
fn nice_top(highest: u64) -> u64 {
    let mut top = 4u64 << 20;
    while top < highest + highest / 10 {
        top *= 2;
    }
    top
}

/// Round times for an axis from 0 to `wall` seconds, at most about `most` of them.
pub(crate) fn ticks(wall: f64, most: usize) -> Vec<f64> {
    const STEPS: [f64; 12] = [
        0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
    ];
    let step = STEPS
        .into_iter()
        .find(|step| wall / step <= most as f64)
        .unwrap_or(600.0);
    let count = (wall / step).floor() as usize;
    (0..=count).map(|n| n as f64 * step).collect()
}

/// A tick's label: `250ms`, `12s`, `2m30s`.
pub(crate) fn tick_label(at: f64) -> String {
    if at == 0.0 {
        "0".to_owned()
    } else if at < 1.0 {
        format!("{}ms", (at * 1000.0).round())
    } else if at < 120.0 {
        format!("{}s", (at * 10.0).round() / 10.0)
    } else {
        let whole = at.round() as u64;
        match whole % 60 {
            0 => format!("{}m", whole / 60),
            s => format!("{}m{s:02}s", whole / 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, processes: u64, data_dir: u64) -> Sample {
        Sample {
            at,
            processes,
            data_dir,
        }
    }

    #[test]
    fn thinning_keeps_each_stretchs_peak() {
        let samples: Vec<Sample> = (0..1000)
            .map(|n| sample(n as f64, n % 7, if n == 501 { 99 } else { 1 }))
            .collect();
        let thinned = thin(&samples, 100);
        assert_eq!(thinned.len(), 100);
        assert!(
            thinned.iter().any(|s| s.data_dir == 99),
            "the spike survives"
        );
        assert!(thinned.iter().all(|s| s.processes == 6));
    }

    #[test]
    fn the_axis_top_is_round_and_above_the_peak() {
        assert_eq!(nice_top(0), 4 << 20);
        for highest in [5u64 << 20, 100 << 20, 3 << 30] {
            let top = nice_top(highest);
            assert!(top > highest, "{top} for {highest}");
            assert!(top < highest * 3, "{top} for {highest}");
        }
    }

    #[test]
    fn ticks_are_round_and_few() {
        let labels =
            |wall: f64| -> Vec<String> { ticks(wall, 10).into_iter().map(tick_label).collect() };
        assert_eq!(
            labels(0.35),
            ["0", "50ms", "100ms", "150ms", "200ms", "250ms", "300ms"]
        );
        assert_eq!(labels(95.0).len(), 10);
        assert_eq!(labels(95.0)[9], "90s");
        let labels: Vec<String> = [0.0, 0.25, 12.0, 150.0, 180.0].map(tick_label).to_vec();
        assert_eq!(labels, ["0", "250ms", "12s", "2m30s", "3m"]);
    }

    #[test]
    fn in_ram_the_data_directory_is_stacked_on_the_processes() {
        let mut run = Run::default();
        run.wall = 10.0;
        run.memory = vec![
            sample(0.0, 10 << 20, 5 << 20),
            sample(10.0, 20 << 20, 30 << 20),
        ];
        run.phases = vec![("tests".to_owned(), 2.0, 9.0)];
        let svg = Memory::new(&run, true, 600).svg();
        assert!(svg.contains("class=\"m-proc\""), "{svg}");
        assert!(svg.contains("class=\"m-data\""), "{svg}");
        assert!(svg.contains("<title>tests 7.000s</title>"), "{svg}");
        assert!(svg.contains("server processes 20.0 MiB, data directory 30.0 MiB"));
        let on_disk = Memory::new(&run, false, 600).svg();
        assert!(on_disk.contains("m-data line"), "{on_disk}");
    }
}
