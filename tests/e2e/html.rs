//! The HTML report end to end, opened in a real browser (Debian's `chromium`, headless).
//!
//! `fixtures/html-probe` is run twice: the first run teaches the test history which tests only read; the
//! second has a pass, a failure whose database is kept, a test that passes on its retry, a read-only group
//! and databases handed on (reuse). Its page must load without a console message, draw one bar per test,
//! list the failure first with its output and `psql` line, draw the memory chart, and look like something
//! (a screenshot with many colours); `cargo pgtest report` must render the same page from the run's
//! `--json` file. A page of 10,000 synthetic tests must stay under 2 MB and open in the browser quickly. A
//! run stopped by Ctrl-C and one configured with the `html` key write their page too.
//!
//! Self-contained (its own helpers, nothing from tests/common), so it can move into the one integration
//! binary as a module. Without PostgreSQL or Chromium a test is skipped, except in CI (`CI` is `true` or
//! `1`), where it fails.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{self, postgres_available, skip, Project, BINARY};

crate::tests! {
    a_run_with_every_kind_of_test_gets_a_page_the_browser_draws,
    ten_thousand_tests_make_a_small_page_the_browser_opens_quickly,
    an_interrupted_run_still_writes_its_page,
    the_html_key_writes_the_page_and_the_summary_points_at_it,
}

/// A private copy of `fixtures/html-probe` ([`Project::copy_of`]) run with its own target directory (so
/// its test history starts empty).
struct Probe(Project);

impl std::ops::Deref for Probe {
    type Target = Project;

    fn deref(&self) -> &Project {
        &self.0
    }
}

impl Probe {
    fn new() -> Probe {
        Probe(Project::copy_of("html-probe"))
    }

    /// A file beside the project.
    fn path(&self, name: &str) -> PathBuf {
        self.probe_dir.with_file_name(name)
    }

    /// `cargo-pgtest pgtest ARGS` in the project, with a scrubbed environment plus `env`.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = support::scrubbed_pgtest();
        command
            .args(args)
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", self.dir.join("target"))
            .env("PGTEST_TMPDIR", self.cluster_parent.path())
            .env("PROBE_DIR", &self.probe_dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        command
    }

    /// Runs it to the end; fails, showing what it printed, unless it exits with `code`.
    fn run(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> Output {
        let output = self.command(args, env).output().expect("cargo-pgtest runs");
        assert_eq!(
            output.status.code(),
            Some(code),
            "cargo-pgtest {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// The lines of a `--json` file.
fn events(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == kind)
        .collect()
}

/// The page without the time it was rendered, the only part two renderings of one run may differ in.
fn untimed(page: &str) -> String {
    let start = page
        .find("<time>")
        .expect("the page says when it was rendered");
    let end = page[start..]
        .find("</time>")
        .expect("the time element ends")
        + start;
    format!("{}{}", &page[..start], &page[end..])
}

/// Headless Chromium with a profile of its own.
struct Browser {
    program: PathBuf,
    profile: tempfile::TempDir,
}

/// What the browser made of a page: the DOM once its script ran, and every console message it logged.
struct Loaded {
    dom: String,
    console: Vec<String>,
    took: Duration,
}

impl Browser {
    /// Chromium, if it is installed (`CHROMIUM` names another binary); else a skip.
    fn find() -> Option<Browser> {
        let named = std::env::var_os("CHROMIUM").map(PathBuf::from);
        let found = named.into_iter().chain(
            [
                "chromium",
                "chromium-browser",
                "google-chrome",
                "google-chrome-stable",
            ]
            .into_iter()
            .filter_map(on_path),
        );
        match found.into_iter().next() {
            Some(program) => Some(Browser {
                program,
                profile: tempfile::tempdir().unwrap(),
            }),
            None => {
                skip("Chromium is missing (apt-get install chromium)");
                None
            }
        }
    }

    fn command(&self, page: &Path, what: &[&str]) -> Command {
        let mut command = Command::new(&self.program);
        // No sandbox: this suite runs as root in CI, where Chromium's sandbox refuses to start.
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(["--enable-logging=stderr", "--v=0", "--no-first-run"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(what)
            .arg(format!("file://{}", page.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Loads `page` and returns its DOM after its script ran.
    fn load(&self, page: &Path) -> Loaded {
        let began = Instant::now();
        let (stdout, stderr) = finish(self.command(page, &["--dump-dom"]).spawn().unwrap());
        Loaded {
            dom: stdout,
            console: console_lines(&stderr),
            took: began.elapsed(),
        }
    }

    /// A screenshot of `page`, `width` by `height`; the console messages.
    fn screenshot(&self, page: &Path, png: &Path, width: u32, height: u32) -> Vec<String> {
        let size = format!("--window-size={width},{height}");
        let to = format!("--screenshot={}", png.display());
        let (_, stderr) = finish(self.command(page, &[&size, &to]).spawn().unwrap());
        assert!(png.is_file(), "no screenshot; Chromium said:\n{stderr}");
        console_lines(&stderr)
    }
}

/// `cargo pgtest report JSON -o PAGE`, run to its end.
fn report(json: &Path, page: &Path) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(["pgtest", "report"])
        .arg(json)
        .arg("-o")
        .arg(page);
    command.output().unwrap()
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Waits for Chromium (two minutes at most: a hung browser must not hang the suite); its output.
fn finish(mut child: Child) -> (String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Chromium did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (out.join().unwrap(), err.join().unwrap())
}

/// What the page logged: Chromium writes each console message (errors and uncaught exceptions included)
/// to its log as a `CONSOLE` line.
fn console_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect()
}

/// How many times `needle` occurs in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// The PNG's distinct colours, and the share of its pixels that are not near-white.
fn colours(png: &Path) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buffer[..info.buffer_size()];
    let mut distinct = std::collections::HashSet::new();
    let mut inked = 0usize;
    for pixel in pixels.chunks(channels) {
        let rgb = (pixel[0], pixel[1], pixel[2.min(channels - 1)]);
        distinct.insert(rgb);
        inked += usize::from(rgb.0 < 240 || rgb.1 < 240 || rgb.2 < 240);
    }
    (
        distinct.len(),
        inked as f64 / (pixels.len() / channels) as f64,
    )
}

fn a_run_with_every_kind_of_test_gets_a_page_the_browser_draws() {
    if !postgres_available() {
        return;
    }
    let Some(browser) = Browser::find() else {
        return;
    };
    let probe = Probe::new();
    let common = ["--jobs", "2", "--retries", "1"];
    let first = probe.path("first.jsonl");
    let mut args = common.to_vec();
    args.extend(["--json", first.to_str().unwrap()]);
    probe.run(&args, &[("HTML_PROBE_FIRST", "1")], 100);
    let (json, page) = (probe.path("events.jsonl"), probe.path("report.html"));
    let mut args = common.to_vec();
    args.extend([
        "--json",
        json.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    let second = probe.run(&args, &[], 100);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("Report {}", page.display())),
        "the summary points at the page:\n{stderr}"
    );

    let events = events(&json);
    the_events_can_draw_the_timeline(&events);
    let again = probe.path("again.html");
    let report = report(&json, &again);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let written = fs::read_to_string(&page).unwrap();
    assert_eq!(
        untimed(&written),
        untimed(&fs::read_to_string(&again).unwrap()),
        "`cargo pgtest report` renders the page the run wrote"
    );

    let ran = of_type(&events, "test_finished").len();
    the_browser_draws_it(&browser, &page, ran);
    hover_click_zoom_sort_and_filter_work(&browser, &written, &probe.path("used.html"));
    let png = probe.path("report.png");
    let console = browser.screenshot(&page, &png, 1280, 1700);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let (distinct, inked) = colours(&png);
    assert!(
        distinct > 200,
        "{distinct} colours: a blank or flat screenshot"
    );
    assert!(
        inked > 0.05,
        "only {:.1}% of the screenshot is not white",
        inked * 100.0
    );
    if let Some(to) = std::env::var_os("PGTEST_SCREENSHOT_TO") {
        fs::copy(&png, to).unwrap();
    }
}

/// Every line has its time; each test's start names its job slot and database; the run had a group, a
/// reused database, a retry, a kept failure and memory samples.
fn the_events_can_draw_the_timeline(events: &[Value]) {
    for event in events {
        assert!(event["at_seconds"].as_f64().is_some(), "no time: {event}");
    }
    let starts = of_type(events, "test_started");
    for start in &starts {
        assert!(
            start["slot"].as_u64().is_some_and(|slot| slot < 2),
            "{start}"
        );
    }
    let database = |kind: &str| starts.iter().filter(|s| s["database"] == kind).count();
    assert!(database("group") >= 2, "a read-only group ran: {starts:#?}");
    assert!(
        database("reused") >= 1,
        "a database was handed on: {starts:#?}"
    );
    let groups = of_type(events, "batch_started");
    assert!(
        groups
            .iter()
            .any(|b| b["kind"] == "group" && b["slots"] == 2),
        "{groups:?}"
    );
    let retried = of_type(events, "test_retry");
    assert!(
        retried.iter().any(|r| r["test"]["name"] == "flaky_once"),
        "{retried:?}"
    );
    let kept = of_type(events, "database_kept");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["test"]["name"], "fails_on_purpose");
    assert!(of_type(events, "memory_sample").len() >= 2);
}

/// The page loads without a console message and draws what the run did.
fn the_browser_draws_it(browser: &Browser, page: &Path, ran: usize) {
    let loaded = browser.load(page);
    let dom = &loaded.dom;
    assert!(
        loaded.console.is_empty(),
        "console messages: {:#?}",
        loaded.console
    );
    assert!(
        dom.contains("data-ready=\"true\""),
        "the script did not finish:\n{dom}"
    );
    let bars = count(dom, " last\" data-r=");
    assert_eq!(bars, ran, "one timeline bar per test");
    assert!(dom.contains("class=\"batch b-group\""), "the group's bar");
    assert!(
        count(dom, "<tr class=\"row\"") >= ran,
        "a table row per test"
    );
    let first = dom
        .find("<details class=\"failure\"")
        .expect("a failure is listed");
    let failure = &dom[first..first + dom[first..].find("</details>").unwrap()];
    assert!(
        dom.find("id=\"timeline\"").unwrap() > first,
        "failures come first"
    );
    assert!(failure.contains("fails_on_purpose"), "{failure}");
    assert!(
        failure.contains("html-probe fails on purpose"),
        "its output: {failure}"
    );
    assert!(
        failure.contains("cargo pgtest psql html-probe::mixed fails_on_purpose"),
        "its psql line: {failure}"
    );
    let chart = &dom[dom.find("id=\"memory-chart\"").expect("a memory chart")..];
    let area = &chart[chart.find("class=\"m-proc\" d=\"").unwrap()..];
    let points = count(&area[..area.find("Z\"").unwrap()], "L");
    assert!(points >= 3, "the memory chart has points: {area:.200}");
}

/// The page with a script after its own that uses it as a person would: hovers the failed test's bar and
/// clicks it, zooms the timeline, sorts the table by name and filters it. What it saw goes on `<body>`.
fn hover_click_zoom_sort_and_filter_work(browser: &Browser, page: &str, used: &Path) {
    const USE: &str = r#"<script>
(function () {
  var body = document.body.dataset;
  var bar = document.querySelector('#tl rect.run.last.st-failed');
  bar.dispatchEvent(new MouseEvent('mousemove', { bubbles: true, clientX: 300, clientY: 300 }));
  body.tip = document.getElementById('tip').hidden ? 'hidden' : document.getElementById('tip').textContent;
  bar.dispatchEvent(new MouseEvent('click', { bubbles: true }));
  var detail = document.getElementById('detail');
  body.detail = detail.hidden ? 'hidden' : detail.textContent;
  // Zoomed in at a bar's middle, that bar stays in view and grows (found again by its run, since bars
  // narrower than a pixel are merged and may come apart).
  var first = document.querySelector('#tl rect.run.last');
  var run = first.dataset.r, box = first.getBoundingClientRect(), before = +first.getAttribute('width');
  document.getElementById('tl').dispatchEvent(new WheelEvent('wheel', { deltaY: -100, clientX: box.left + box.width / 2, clientY: box.top + box.height / 2, bubbles: true, cancelable: true }));
  var after = document.querySelector('#tl rect[data-r="' + run + '"]');
  body.zoomed = String(!!after && +after.getAttribute('width') > before);
  document.querySelector('th[data-key=name]').click();
  body.firstRow = document.querySelector('#table tr.row').textContent;
  var filter = document.getElementById('filter');
  filter.value = 'settles_';
  filter.dispatchEvent(new Event('input'));
  body.rows = String(document.querySelectorAll('#table tr.row').length);
})();
</script>
</body>"#;
    fs::write(used, page.replace("</body>", USE)).unwrap();
    let loaded = browser.load(used);
    assert!(
        loaded.console.is_empty(),
        "console messages: {:#?}",
        loaded.console
    );
    let seen = |name: &str| {
        let marker = format!(" data-{name}=\"");
        let at = loaded
            .dom
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in\n{}", loaded.dom));
        let rest = &loaded.dom[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    };
    assert!(
        seen("tip").contains("fails_on_purpose"),
        "the tooltip names the test"
    );
    let detail = seen("detail");
    assert!(
        detail.contains("html-probe fails on purpose"),
        "the details show its output: {detail}"
    );
    assert!(
        detail.contains("cargo pgtest psql"),
        "and its psql line: {detail}"
    );
    assert_eq!(seen("zoomed"), "true", "the wheel zooms in");
    assert!(
        seen("first-row").contains("blocks_when_told"),
        "sorted by name"
    );
    assert_eq!(
        seen("rows"),
        "6",
        "the filter leaves the six settles_ tests"
    );
}

/// `count` tests' events as a run on `jobs` slots writes them, history included, some failing.
fn synthetic_events(count: u32, jobs: u32) -> String {
    let mut lines = vec![
        json!({ "type": "cluster_ready", "version": "PostgreSQL 15.18", "in_ram": true, "run_dir": "/dev/shm/x", "log": "/dev/shm/x/log", "server_user": "postgres", "at_seconds": 0.4 }),
        json!({ "type": "phase_finished", "phase": "build", "seconds": 2.0, "at_seconds": 2.5 }),
        json!({ "type": "run_started", "to_run": count, "filtered_out": 0, "jobs": jobs, "isolation": "test", "at_seconds": 2.6 }),
    ];
    let mut free = vec![2.6f64; jobs as usize];
    for n in 0..count {
        let slot = (0..free.len())
            .min_by(|a, b| free[*a].total_cmp(&free[*b]))
            .unwrap();
        let start = free[slot] + 0.002;
        let seconds = 0.01 + f64::from(n * 7919 % 1000) / 4000.0;
        let test = json!({ "binary": format!("app::suite_{}", n % 9), "name": format!("module_{}::case_{n}", n % 97) });
        let database = ["fresh", "reused", "reused"][n as usize % 3];
        lines.push(json!({ "type": "test_started", "test": test, "database_wait_seconds": 0.0015, "slot": slot, "database": database, "batch": null, "at_seconds": start }));
        let (status, output) = match n % 250 {
            0 => (
                "failed",
                "thread 'x' panicked at tests/it.rs:10:5:\nassertion failed: rows == 3",
            ),
            _ => ("passed", ""),
        };
        lines.push(json!({ "type": "test_finished", "test": test, "status": status, "seconds": seconds, "output": output, "at_seconds": start + seconds }));
        let history: Vec<f64> = (0..10)
            .map(|k| seconds * (0.9 + f64::from(k) / 50.0))
            .collect();
        lines.push(json!({ "type": "test_history", "test": test, "seconds": history, "at_seconds": start + seconds }));
        free[slot] = start + seconds;
    }
    let end = free.iter().copied().fold(0.0, f64::max);
    for second in 0..end as u32 {
        lines.push(json!({ "type": "memory_sample", "processes_bytes": 40_000_000 + second * 10_000, "data_dir_bytes": 90_000_000 + (second % 13) * 4_000_000, "at_seconds": f64::from(second) }));
    }
    lines.push(json!({ "type": "phase_finished", "phase": "tests", "seconds": end - 2.6, "at_seconds": end }));
    let failed = count.div_ceil(250);
    lines.push(json!({ "type": "summary", "passed": count - failed, "failed": failed, "crashed": 0, "timed_out": 0, "not_run": 0, "ignored": 0, "filtered_out": 0, "flaky": 0, "at_seconds": end + 0.1 }));
    lines.sort_by(|a, b| {
        a["at_seconds"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["at_seconds"].as_f64().unwrap())
    });
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn ten_thousand_tests_make_a_small_page_the_browser_opens_quickly() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (json, page) = (
        dir.path().join("events.jsonl"),
        dir.path().join("page.html"),
    );
    fs::write(&json, synthetic_events(10_000, 8)).unwrap();
    let rendering = Instant::now();
    let report = report(&json, &page);
    let rendered = rendering.elapsed();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let size = fs::metadata(&page).unwrap().len();
    let loaded = browser.load(&page);
    let script_ms = loaded
        .dom
        .split("data-render-ms=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("?")
        .to_owned();
    eprintln!(
        "10,000 tests: page {size} bytes, rendered in {rendered:.2?}, loaded by Chromium in {:.2?} (its script: {script_ms} ms)",
        loaded.took
    );
    assert!(size < 2 << 20, "{size} bytes");
    assert!(
        loaded.console.is_empty(),
        "console messages: {:#?}",
        loaded.console
    );
    assert!(
        loaded.dom.contains("data-ready=\"true\""),
        "the script did not finish"
    );
    // Loose: the browser starts in about a second here; machines under load are slower.
    assert!(loaded.took < Duration::from_secs(30), "{:?}", loaded.took);
    assert!(loaded.dom.contains("10000 passed") || loaded.dom.contains("9960 passed"));
}

fn an_interrupted_run_still_writes_its_page() {
    if !postgres_available() {
        return;
    }
    let probe = Probe::new();
    let page = probe.path("stopped.html");
    let mut child = probe
        .command(
            &["blocks_when_told", "--html", page.to_str().unwrap()],
            &[("HTML_PROBE_BLOCK", "1")],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let blocking = probe.probe_dir.join("blocking");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !fs::read_to_string(&blocking).is_ok_and(|pid| !pid.is_empty()) {
        assert!(Instant::now() < deadline, "the blocking test never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let stderr = stderr_to_end(&mut child);
    assert_eq!(child.wait().unwrap().code(), Some(130), "{stderr}");
    let written = fs::read_to_string(&page).unwrap_or_else(|e| panic!("{e}; stderr:\n{stderr}"));
    assert!(written.contains("interrupted by SIGINT"), "{written:.2000}");
    assert!(written.contains("NOT RUN"), "the stopped test is NOT RUN");
}

/// A run's stderr, read until it closes (as the run ends).
fn stderr_to_end(child: &mut Child) -> String {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

fn the_html_key_writes_the_page_and_the_summary_points_at_it() {
    if !postgres_available() {
        return;
    }
    let probe = Probe::new();
    let manifest = probe.dir.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    let table = "\n[package.metadata.pgtest]\nhtml = \"target/pgtest/report.html\"\n";
    fs::write(&manifest, text + table).unwrap();
    let run = probe.run(&["reads_02"], &[], 0);
    let page = probe.dir.join("target/pgtest/report.html");
    let written = fs::read_to_string(&page).unwrap();
    assert!(written.contains("<span class=\"verdict pass\">passed</span>"));
    assert!(written.contains("reads_02"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("Report {}", page.display())),
        "{stderr}"
    );
}
