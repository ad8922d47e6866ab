//! The end-to-end tests, built as one binary (as cargo's and nextest's own suites are): a module per area,
//! one set of helpers (`support`), and this harness. Cargo.toml declares the target with `harness = false`;
//! libtest-mimic runs a trial for every fixture under `fixtures/` (`fixtures::<name>`), for every supported
//! PostgreSQL major (`versions::postgres_<major>`, ...) and for every test function a module lists with
//! [`tests!`] (`<module>::<function>`), so that filters, `--exact`, `--skip`, `--list` and
//! `--include-ignored` work as with `cargo test`.
//!
//! A test function fails by panicking; one that cannot run here calls `support::skip` and is reported
//! ignored (in CI it fails instead). Without `fixtures/` (the crate `cargo package` makes leaves it out),
//! every trial that reaches for a fixture is reported ignored with that reason, in CI too. Trials run `--test-threads` at a time (by default, one per CPU), the
//! ones marked `alone` with no other trial beside them (see [`Turn`]).

mod support;

mod cache;
mod claims;
mod extra_databases;
mod faults;
mod fetch;
mod fixtures;
mod fuzz;
mod history;
mod html;
mod inspect;
mod memory;
mod nextest;
mod non_root;
mod outputs;
mod parity;
mod phases;
mod reuse;
mod runner;
mod schedule;
#[cfg(target_os = "linux")]
mod security;
mod server;
mod shards;
mod ship;
mod snapshots;
mod trials;
mod versions;

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use libtest_mimic::{Arguments, Completion, Trial};

fn main() {
    let (args, filters) = arguments();
    // The longest first, so that the last trials to finish are short ones.
    let mut trials = fixtures::trials();
    trials.extend(versions::trials());
    let modules = [
        nextest::tests,
        server::tests,
        reuse::tests,
        runner::tests,
        schedule::tests,
        trials::tests,
        faults::tests,
        claims::tests,
        inspect::tests,
        outputs::tests,
        parity::tests,
        shards::tests,
        ship::tests,
        cache::tests,
        extra_databases::tests,
        fetch::tests,
        history::tests,
        html::tests,
        memory::tests,
        non_root::tests,
        phases::tests,
        #[cfg(target_os = "linux")]
        security::tests,
        snapshots::tests,
        fuzz::tests,
    ];
    trials.extend(modules.into_iter().flat_map(|tests| tests()));
    if filters.len() > 1 {
        trials.retain(|trial| {
            filters.iter().any(|filter| match args.exact {
                true => trial.name() == filter,
                false => trial.name().contains(filter.as_str()),
            })
        });
    }
    libtest_mimic::run(&args, trials).exit();
}

/// libtest's arguments, and its filters: any number of them, as libtest takes (libtest-mimic takes one),
/// a trial running when its name matches any. One is left to libtest-mimic.
fn arguments() -> (Arguments, Vec<String>) {
    const TAKE_A_VALUE: [&str; 6] = [
        "--test-threads",
        "--logfile",
        "--skip",
        "--color",
        "--format",
        "-Z",
    ];
    let mut argv = std::env::args();
    let mut options: Vec<String> = argv.next().into_iter().collect();
    let mut filters = Vec::new();
    while let Some(arg) = argv.next() {
        if TAKE_A_VALUE.contains(&arg.as_str()) {
            options.push(arg);
            options.extend(argv.next());
        } else if arg.starts_with('-') {
            options.push(arg);
        } else {
            filters.push(arg);
        }
    }
    if let [one] = &filters[..] {
        options.push(one.clone());
    }
    (Arguments::from_iter(options), filters)
}

/// `tests! { a, b; alone: c }` in a module defines its `tests()`: a trial for each function listed, named
/// `<module>::<function>`. The functions after `alone:` run with no other trial beside them. A function
/// left out of the list is dead code, which the lints refuse.
#[macro_export]
macro_rules! tests {
    (
        $($(#[$attr:meta])* $test:ident),* $(,)?
        $(; alone: $($(#[$alone_attr:meta])* $alone:ident),* $(,)?)?
    ) => {
        pub(crate) fn tests() -> Vec<libtest_mimic::Trial> {
            Vec::from([
                $(
                    $(#[$attr])*
                    $crate::trial(module_path!(), stringify!($test), $test, false),
                )*
                $($(
                    $(#[$alone_attr])*
                    $crate::trial(module_path!(), stringify!($alone), $alone, true),
                )*)?
            ])
        }
    };
}

/// The test function `test` of the module at `module_path` as a trial named `<module>::<name>`.
fn trial(module_path: &str, name: &str, test: fn(), alone: bool) -> Trial {
    // `e2e::cache` → `cache`.
    let module = module_path.split_once("::").map_or(module_path, |(_, m)| m);
    Trial::ignorable_test(format!("{module}::{name}"), move || {
        let _turn = Turn::take(alone);
        support::take_skipped();
        if let Err(panic) = std::panic::catch_unwind(test) {
            match panic.downcast::<support::NoFixtures>() {
                Ok(missing) => return Ok(Completion::ignored_with(missing.0)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(support::take_skipped().map_or(Completion::Completed, Completion::ignored_with))
    })
}

/// A trial's turn to run. Trials run side by side, each holding the turn shared; a trial marked `alone`
/// holds it exclusively, for what others would disturb: the full-tmpfs test counts PostgreSQL's shared
/// memory segments in /dev/shm, and an external test server (server.rs) keeps one.
pub(crate) enum Turn {
    Shared {
        _guard: RwLockReadGuard<'static, ()>,
    },
    Alone {
        _guard: RwLockWriteGuard<'static, ()>,
    },
}

static TURNS: RwLock<()> = RwLock::new(());

impl Turn {
    /// Waits for the turn; a trial that panicked holding it leaves it usable.
    pub(crate) fn take(alone: bool) -> Turn {
        match alone {
            false => Turn::Shared {
                _guard: TURNS.read().unwrap_or_else(PoisonError::into_inner),
            },
            true => Turn::Alone {
                _guard: TURNS.write().unwrap_or_else(PoisonError::into_inner),
            },
        }
    }
}
