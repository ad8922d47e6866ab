//! The page: one HTML file with its CSS, SVG and script inline, nothing fetched at view time. What reads
//! without JavaScript is written here as HTML and SVG: the header (counts, wall time, phases, PostgreSQL,
//! memory peak, slowest tests), the failures with their output and `psql` line, the memory chart, and the
//! first tests of the table. The timeline and the full table are drawn by the page's own script from a
//! compact copy of the run embedded as JSON ([`super::data`]), drawing only what is in view, so that a run of
//! 10,000 tests stays a page of about a megabyte that opens at once.

use std::fmt::Write as _;

use super::data::{data, DATABASES, STATUSES};
use super::model::{Run, Test};
use super::text::{bytes, clean_output, escape, script_safe, seconds, tail};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// How many failures are listed with their output (the others are in the table), and how many of them
/// open.
const FAILURES_SHOWN: usize = 100;
const FAILURES_OPEN: usize = 10;
/// The most of a test's output shown with its failure; the end is kept, where the panic is.
const FAILURE_OUTPUT_BYTES: usize = 8 * 1024;
/// How many tests the table shows without JavaScript.
const STATIC_ROWS: usize = 100;
/// The most points of the memory chart (the samples are thinned to the peak of each stretch).
const MEMORY_POINTS: usize = 600;

/// The page of `run`; `generated` says when it was rendered, the only part that differs between two
/// renderings of the same events.
pub(crate) fn render(run: &Run, generated: &str) -> String {
    let mut page = String::with_capacity(64 * 1024 + run.tests.len() * 160);
    let title = format!("cargo pgtest: {}", verdict(run).0);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"cargo-pgtest {}\">\n<title>{}</title>\n<style>\n{STYLE}</style>\n\
         </head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        escape(&title)
    );
    header(&mut page, run);
    failures(&mut page, run);
    timeline(&mut page, run);
    memory(&mut page, run);
    tests(&mut page, run);
    let _ = write!(
        page,
        "<footer>Rendered by cargo-pgtest {} at <time>{}</time> from {} events.</footer>\n\
         <div id=\"tip\" role=\"tooltip\" hidden></div>\n\
         <aside id=\"detail\" hidden><button type=\"button\" id=\"detail-close\" aria-label=\"Close\">×</button>\
         <div id=\"detail-body\"></div></aside>\n\
         <script type=\"application/json\" id=\"run-data\">{}</script>\n<script>\n{SCRIPT}</script>\n\
         </body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(generated),
        run.lines,
        script_safe(&data(run).to_string()),
    );
    page
}

/// The run's verdict word and its class.
fn verdict(run: &Run) -> (String, &'static str) {
    match (&run.interrupted, run.counts.failures(), run.complete) {
        (Some(signal), _, _) => (format!("interrupted by {signal}"), "warn"),
        (None, 0, true) if run.tests.is_empty() => ("no tests ran".to_owned(), "warn"),
        (None, 0, true) => ("passed".to_owned(), "pass"),
        (None, 0, false) => ("incomplete (the run did not finish)".to_owned(), "warn"),
        (None, _, _) => ("failed".to_owned(), "fail"),
    }
}

fn header(page: &mut String, run: &Run) {
    let (word, class) = verdict(run);
    let _ = write!(
        page,
        "<header>\n<h1><span class=\"verdict {class}\">{}</span> cargo pgtest</h1>\n<p class=\"counts\">{}</p>\n<dl class=\"facts\">\n",
        escape(&word),
        counts(run)
    );
    let mut fact = |name: &str, value: String| {
        let _ = writeln!(page, "<div><dt>{name}</dt><dd>{value}</dd></div>");
    };
    fact("Wall time", seconds(run.wall));
    if let Some(jobs) = run.jobs {
        let isolation = match run.isolation.as_deref() {
            Some("shared") => ", shared isolation",
            _ => "",
        };
        fact("Jobs", format!("{jobs}{isolation}"));
    }
    if let Some(cluster) = &run.cluster {
        let place = if cluster.in_ram {
            "data in RAM (tmpfs)"
        } else {
            "data on disk"
        };
        let value = format!(
            "{}, {place} <span class=\"path\">{}</span>",
            escape(&cluster.version),
            escape(&cluster.run_dir)
        );
        fact("PostgreSQL", value);
    }
    if let Some(peak) = run.peak {
        let in_ram = run.cluster.as_ref().is_none_or(|c| c.in_ram);
        fact("Peak memory", peak_text(peak, in_ram));
    }
    page.push_str("</dl>\n");
    phases(page, run);
    for note in &run.notes {
        let _ = writeln!(page, "<p class=\"note\">{}</p>", escape(note));
    }
    for warning in &run.warnings {
        let _ = writeln!(
            page,
            "<p class=\"warning\">warning: {}</p>",
            escape(warning)
        );
    }
    slowest(page, run);
    page.push_str("</header>\n<nav><a href=\"#failures\">Failures</a><a href=\"#timeline\">Timeline</a><a href=\"#memory\">Memory</a><a href=\"#tests\">Tests</a></nav>\n");
}

/// "12 passed (1 flaky), 1 failed, 0 ignored, 3 filtered out", as the terminal's summary says it.
fn counts(run: &Run) -> String {
    let c = &run.counts;
    let passed = match c.flaky {
        0 => format!("<b class=\"pass\">{} passed</b>", c.passed),
        flaky => format!("<b class=\"pass\">{} passed</b> ({flaky} flaky)", c.passed),
    };
    let failed = c.failed + c.crashed + c.timed_out;
    let failed_class = if failed > 0 { "fail" } else { "quiet" };
    let mut parts = vec![
        passed,
        format!("<b class=\"{failed_class}\">{failed} failed</b>"),
    ];
    if c.not_run > 0 {
        parts.push(format!("<b class=\"fail\">{} not run</b>", c.not_run));
    }
    parts.push(format!("{} ignored", c.ignored));
    parts.push(format!("{} filtered out", c.filtered_out));
    let mut line = parts.join(", ");
    let kinds: Vec<String> = [(c.crashed, "crashed"), (c.timed_out, "timed out")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !kinds.is_empty() {
        let _ = write!(line, " (of the failed: {})", kinds.join(", "));
    }
    line
}

fn peak_text(peak: super::model::Peak, in_ram: bool) -> String {
    if in_ram {
        format!(
            "{} RAM (server processes {} + data directory {})",
            bytes(peak.ram),
            bytes(peak.processes),
            bytes(peak.data_dir)
        )
    } else {
        format!(
            "{} (server processes; data directory {} on disk)",
            bytes(peak.processes_peak.max(peak.processes)),
            bytes(peak.data_dir)
        )
    }
}

/// The phases as one stacked bar, each as long as its share of their sum, and a legend with their times.
fn phases(page: &mut String, run: &Run) {
    let total: f64 = run.phases.iter().map(|(_, s, e)| (e - s).max(0.0)).sum();
    if run.phases.is_empty() || total <= 0.0 {
        return;
    }
    let mut ordered = run.phases.clone();
    ordered.sort_by(|a, b| a.1.total_cmp(&b.1));
    page.push_str("<div class=\"phases\"><svg class=\"phasebar\" viewBox=\"0 0 1000 22\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"time per phase\">");
    let mut x = 0.0;
    for (name, start, end) in &ordered {
        let width = (end - start).max(0.0) / total * 1000.0;
        let _ = write!(
            page,
            "<rect class=\"ph-{name}\" x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"22\"><title>{}: {}</title></rect>",
            phase_label(name),
            seconds(end - start)
        );
        x += width;
    }
    page.push_str("</svg><ul class=\"legend\">");
    for (name, start, end) in &ordered {
        let _ = write!(
            page,
            "<li><i class=\"sw ph-{name}\"></i>{} {}</li>",
            phase_label(name),
            seconds(end - start)
        );
    }
    page.push_str("</ul></div>\n");
}

/// A phase's name as the terminal's summary says it.
pub(crate) fn phase_label(phase: &str) -> &str {
    match phase {
        "cluster_boot" => "cluster boot",
        "template" => "migrations+fixtures",
        "build" => "build",
        "tests" => "tests",
        "teardown" => "teardown",
        other => other,
    }
}

/// The five slowest tests, which the terminal's summary lists too.
fn slowest(page: &mut String, run: &Run) {
    let mut timed: Vec<&Test> = run.tests.iter().filter(|t| t.seconds.is_some()).collect();
    if timed.len() < 2 {
        return;
    }
    timed.sort_by(|a, b| {
        b.seconds
            .unwrap_or(0.0)
            .total_cmp(&a.seconds.unwrap_or(0.0))
    });
    page.push_str("<div class=\"slowest\"><h2>Slowest</h2><ol>");
    for test in timed.iter().take(5) {
        let _ = write!(
            page,
            "<li><span class=\"time\">{}</span> {}</li>",
            seconds(test.seconds.unwrap_or(0.0)),
            test_name(test)
        );
    }
    page.push_str("</ol></div>\n");
}

fn test_name(test: &Test) -> String {
    format!(
        "<span class=\"bin\">{}</span> {}",
        escape(&test.binary),
        escape(&test.name)
    )
}

/// The tests that did not pass, first thing after the header: each with its output and, when its
/// database was kept, the command that opens it. Tests NOT RUN are counted by reason.
fn failures(page: &mut String, run: &Run) {
    let failed: Vec<&Test> = run
        .tests
        .iter()
        .filter(|t| t.failed() && t.status != "not_run")
        .collect();
    let not_run: Vec<&Test> = run.tests.iter().filter(|t| t.status == "not_run").collect();
    let _ = writeln!(
        page,
        "<section id=\"failures\"><h2>Failures <span class=\"n\">{}</span></h2>",
        failed.len() + not_run.len()
    );
    if failed.is_empty() && not_run.is_empty() {
        page.push_str("<p class=\"quiet\">None.</p>\n");
    }
    for (n, test) in failed.iter().take(FAILURES_SHOWN).enumerate() {
        failure(page, test, run, n < FAILURES_OPEN);
    }
    if failed.len() > FAILURES_SHOWN {
        let _ = writeln!(
            page,
            "<p class=\"quiet\">…and {} more, listed in the table below.</p>",
            failed.len() - FAILURES_SHOWN
        );
    }
    not_run_lines(page, &not_run);
    page.push_str("</section>\n");
}

fn failure(page: &mut String, test: &Test, run: &Run, open: bool) {
    let index = run.tests.iter().position(|t| std::ptr::eq(t, test));
    let time = test.seconds.map(seconds).unwrap_or_default();
    let attempts = match test.attempts.len() {
        0 | 1 => String::new(),
        n => format!(" <span class=\"quiet\">after {n} attempts</span>"),
    };
    let _ = writeln!(
        page,
        "<details class=\"failure\"{} data-test=\"{}\"><summary><b class=\"fail\">{}</b> <span class=\"time\">{time}</span> {}{attempts}</summary>",
        if open { " open" } else { "" },
        index.unwrap_or(0),
        escape(&test.label),
        test_name(test)
    );
    if let Some(command) = &test.kept {
        let _ = writeln!(
            page,
            "<p class=\"kept\">database kept: <code class=\"psql\">{}</code></p>",
            escape(command)
        );
    }
    let output = clean_output(&test.output);
    match output.is_empty() {
        true => page.push_str("<p class=\"quiet\">(no output)</p>\n"),
        false => {
            let _ = writeln!(
                page,
                "<pre class=\"output\">{}</pre>",
                escape(&tail(&output, FAILURE_OUTPUT_BYTES))
            );
        }
    }
    page.push_str("</details>\n");
}

/// The tests NOT RUN, one line per reason (an interrupted run can leave thousands).
fn not_run_lines(page: &mut String, not_run: &[&Test]) {
    let mut reasons: Vec<(&str, Vec<&Test>)> = Vec::new();
    for test in not_run {
        let reason = test.reason.as_deref().unwrap_or("no reason given");
        match reasons.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, tests)) => tests.push(test),
            None => reasons.push((reason, vec![test])),
        }
    }
    for (reason, tests) in reasons {
        let _ = write!(
            page,
            "<details class=\"failure not-run\"><summary><b class=\"fail\">NOT RUN</b> {} test(s): {}</summary><ul>",
            tests.len(),
            escape(reason)
        );
        for test in tests.iter().take(200) {
            let _ = write!(page, "<li>{}</li>", test_name(test));
        }
        page.push_str("</ul></details>\n");
    }
}

fn timeline(page: &mut String, run: &Run) {
    let _ = write!(
        page,
        "<section id=\"timeline\"><h2>Timeline <span class=\"n\">{} job slot(s)</span></h2>\n\
         <div class=\"controls\"><button type=\"button\" data-zoom=\"in\" title=\"Zoom in (or the mouse wheel)\">+</button>\
         <button type=\"button\" data-zoom=\"out\" title=\"Zoom out\">−</button>\
         <button type=\"button\" data-zoom=\"tests\">Tests phase</button>\
         <button type=\"button\" data-zoom=\"all\">Whole run</button>\
         <span class=\"hint\">wheel to zoom, drag to pan, click a bar for its details</span></div>\n\
         <ul class=\"legend\"><li><i class=\"sw st-passed\"></i>passed</li><li><i class=\"sw st-failed\"></i>failed</li>\
         <li><i class=\"sw st-crashed\"></i>crashed or timed out</li><li><i class=\"sw st-retry\"></i>failed attempt (retried)</li>\
         <li><i class=\"sw wait\"></i>waiting for its database</li><li><i class=\"sw check\"></i>database check</li>\
         <li><i class=\"sw b-group\"></i>read-only group</li><li><i class=\"sw b-shared\"></i>shared or sqlx batch</li></ul>\n\
         <div id=\"tl\" class=\"tl\"><noscript><p class=\"quiet\">The timeline is drawn by the page's script: open the page with JavaScript on.</p></noscript></div>\n</section>\n",
        run.lanes()
    );
}

/// The memory chart: the processes' and the data directory's bytes over the run (stacked when the data
/// is in RAM), the phases as bands behind them.
fn memory(page: &mut String, run: &Run) {
    page.push_str("<section id=\"memory\"><h2>Memory</h2>\n");
    if run.memory.len() < 2 {
        page.push_str("<p class=\"quiet\">No memory samples (an existing server's memory is not measured, and a run that stops early has none).</p></section>\n");
        return;
    }
    let in_ram = run.cluster.as_ref().is_none_or(|c| c.in_ram);
    let chart = super::chart::Memory::new(run, in_ram, MEMORY_POINTS);
    page.push_str(&chart.svg());
    let data_label = if in_ram {
        "data directory (RAM, tmpfs)"
    } else {
        "data directory (on disk, not RAM)"
    };
    let _ = writeln!(
        page,
        "<ul class=\"legend\"><li><i class=\"sw m-proc\"></i>server processes (PSS)</li><li><i class=\"sw m-data\"></i>{data_label}</li></ul>\n</section>"
    );
}

/// The table: drawn by the script (sortable, filterable, only the rows in view); without it, the first
/// rows in the script's default order (failures first, then the slowest).
fn tests(page: &mut String, run: &Run) {
    let _ = write!(
        page,
        "<section id=\"tests\"><h2>Tests <span class=\"n\">{}</span></h2>\n\
         <div class=\"controls\"><input id=\"filter\" type=\"search\" placeholder=\"filter by name\" aria-label=\"filter by name\">\
         <select id=\"f-status\" aria-label=\"outcome\"><option value=\"\">every outcome</option>{}</select>\
         <select id=\"f-db\" aria-label=\"database\"><option value=\"\">every database</option>{}</select>\
         <label><input type=\"checkbox\" id=\"f-slower\"> slower than their history</label>\
         <span id=\"shown\" class=\"hint\"></span></div>\n\
         <div id=\"table\" class=\"table\"><noscript>\n",
        run.tests.len(),
        options(&STATUSES),
        options(&DATABASES),
    );
    let mut order: Vec<&Test> = run.tests.iter().collect();
    order.sort_by(|a, b| {
        let rank = |t: &Test| STATUSES.iter().position(|s| *s == t.status).unwrap_or(9);
        let time = |t: &Test| t.seconds.unwrap_or(0.0);
        rank(a).cmp(&rank(b)).then(time(b).total_cmp(&time(a)))
    });
    page.push_str("<table><thead><tr><th>Outcome</th><th>Test</th><th>Time</th><th>Attempts</th><th>Database</th></tr></thead><tbody>");
    for test in order.iter().take(STATIC_ROWS) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"time\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&test.label),
            test_name(test),
            test.seconds.map(seconds).unwrap_or_default(),
            test.attempts.len(),
            escape(test.database.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</tbody></table>");
    if run.tests.len() > STATIC_ROWS {
        let _ = write!(
            page,
            "<p class=\"quiet\">The first {STATIC_ROWS} of {} tests; the whole table needs JavaScript.</p>",
            run.tests.len()
        );
    }
    page.push_str("\n</noscript></div>\n</section>\n");
}

fn options(values: &[&str]) -> String {
    values
        .iter()
        .map(|value| format!("<option>{value}</option>"))
        .collect()
}
