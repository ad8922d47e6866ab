//! Stage 8, report: the reporters the command line asks for (human, JSON lines, JUnit, HTML) and the GitHub
//! job summary when `GITHUB_STEP_SUMMARY` is set, fed every event, and the exit code the run ends with. Also
//! `cargo pgtest report`, the HTML page of an earlier run.

use super::error::Error;
use crate::cli::{Cli, NoTests, ReportArgs};
use crate::events::EventReceiver;
use crate::exit_code;
use crate::report::html::{self, Destination, HtmlReport};
use crate::report::libtest::Libtest;
use crate::report::notes::Notes;
use crate::report::step_summary::StepSummary;
use crate::report::styles::Styles;
use crate::report::{human::Human, json::JsonLines, junit::Junit, Reporters, Summary};
use crate::runner::selection::TestArgs;

/// Opens the reporters; an error when a report file cannot be created. The HTML page goes where `html`
/// says once it knows (`--html`, or the configuration's key).
pub(crate) fn reporters(
    cli: &Cli,
    styles: &Styles,
    test_args: &TestArgs,
    html: &Destination,
) -> Result<Reporters, Error> {
    let mut reporters = Reporters::default();
    if cli.given_binary.is_some() {
        // cargo's target runner: libtest's output is the report; stderr gets only the warnings.
        reporters.add(Box::new(Notes::new(std::io::stderr(), styles.clone())));
    } else {
        reporters.add(Box::new(
            Human::new(
                std::io::stderr(),
                styles.clone(),
                cli.pgtest.verbose,
                test_args.shows_passing_output(),
            )
            .quiet(cli.pgtest.quiet)
            .with_progress(shows_progress(cli))
            .html(html.clone()),
        ));
    }
    if let Some(format) = cli.libtest_output.filter(|_| !cli.list) {
        reporters.add(Box::new(Libtest::new(std::io::stdout(), format, test_args)));
    }
    let create = |path: &std::path::PathBuf| {
        std::fs::File::create(path).map_err(|source| Error::ReportFile {
            path: path.clone(),
            source,
        })
    };
    // `list` writes the list itself where `--json` points, and has no results for the reports.
    if let Some(path) = cli.pgtest.json.as_ref().filter(|_| !cli.list) {
        let out: Box<dyn std::io::Write> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(create(path)?)
        };
        reporters.add(Box::new(JsonLines::new(out)));
    }
    if let Some(path) = cli.pgtest.junit.as_ref().filter(|_| !cli.list) {
        create(path)?;
        reporters.add(Box::new(Junit::new(path.clone())));
    }
    if !cli.list {
        // Created now when the flag names it, so that a path that cannot be written stops the run at once.
        if let Some(path) = &cli.pgtest.html {
            create(path)?;
        }
        reporters.add(Box::new(HtmlReport::new(html.clone())));
    }
    if let Some(path) = step_summary_path(cli) {
        reporters.add(Box::new(StepSummary::new(path, styles.clone())));
    }
    Ok(reporters)
}

/// Where GitHub Actions takes the job summary (`GITHUB_STEP_SUMMARY`), for a run of cargo-pgtest's own runner;
/// `list`, `--no-run` and `nextest` run no test of ours to sum up, and as cargo's target runner cargo-pgtest
/// stands for one test binary, which writes none.
fn step_summary_path(cli: &Cli) -> Option<std::path::PathBuf> {
    if cli.list || cli.pgtest.no_run || cli.nextest().is_some() || cli.given_binary.is_some() {
        return None;
    }
    std::env::var_os("GITHUB_STEP_SUMMARY")
        .filter(|path| !path.is_empty())
        .map(std::path::PathBuf::from)
}

/// Whether the progress line is shown: on a terminal only (not `TERM=dumb`), and not with `--quiet`,
/// `--json -` or `list`.
fn shows_progress(cli: &Cli) -> bool {
    use std::io::IsTerminal;
    let json_on_stdout = cli
        .pgtest
        .json
        .as_ref()
        .is_some_and(|p| p.as_os_str() == "-");
    std::io::stderr().is_terminal()
        && !crate::report::styles::dumb_terminal()
        && !cli.pgtest.quiet
        && !json_on_stdout
        && !cli.list
}

/// Feeds every event to the reporters until the channel closes, with a tick each second between them.
pub(crate) async fn consume(reporters: &mut Reporters, mut events: EventReceiver) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv_stamped() => match event {
                Some(stamped) => reporters.report(&stamped),
                None => break,
            },
            _ = ticks.tick() => reporters.tick(),
        }
    }
    reporters.summary.ended_at = Some(events.elapsed());
}

/// Closes the reports and turns the run's outcome into its exit code, printing an error that stopped it.
pub(crate) fn finish(
    reporters: &mut Reporters,
    styles: &Styles,
    no_tests: NoTests,
    result: Result<(), Error>,
) -> u8 {
    if let Err(error) = reporters.finish() {
        eprintln!("error: could not write a report: {error}");
    }
    let summary = &reporters.summary;
    match result {
        Err(Error::Interrupted(signal)) => exit_code::for_signal(signal),
        Err(error) => fail(styles, &error),
        Ok(()) => match &summary.interrupted {
            Some(signal) => exit_code::for_signal(signal),
            None if summary.failures() > 0 => exit_code::TEST_FAILED,
            None if summary.started && summary.ran() == 0 => no_test_ran(styles, summary, no_tests),
            None => exit_code::SUCCESS,
        },
    }
}

/// A run whose selection held no test: says so, and exits as `--no-tests` decides (cargo-nextest's
/// option, with its default, `fail`, and its exit code).
fn no_test_ran(styles: &Styles, summary: &Summary, no_tests: NoTests) -> u8 {
    use owo_colors::OwoColorize;
    let message = format!(
        "no tests to run ({} filtered out, {} ignored)",
        summary.filtered_out, summary.ignored
    );
    match no_tests {
        NoTests::Fail => {
            eprintln!(
                "{} {message}; `--no-tests warn` or `--no-tests pass` lets such a run succeed",
                "error:".style(styles.fail)
            );
            exit_code::NO_TESTS_RUN
        }
        NoTests::Warn => {
            eprintln!("{} {message}", "warning:".style(styles.warning));
            exit_code::SUCCESS
        }
        NoTests::Pass => exit_code::SUCCESS,
    }
}

/// Prints `error` and returns its exit code.
pub(crate) fn fail(styles: &Styles, error: &Error) -> u8 {
    use owo_colors::OwoColorize;
    eprintln!("{} {error}", "error:".style(styles.fail));
    error.exit_code()
}

/// `cargo pgtest report`: the HTML page of the run a `--json` file tells.
pub(crate) fn render(args: &ReportArgs, styles: &Styles) -> u8 {
    use owo_colors::OwoColorize;
    let page = args.page();
    match html::render_file(&args.events, &page) {
        Ok(()) => {
            let word = format!("{:>12}", "Report");
            eprintln!("{} {}", word.style(styles.heading), page.display());
            exit_code::SUCCESS
        }
        Err(error) => fail(styles, &Error::Report(error)),
    }
}
