//! `cargo pgtest completions SHELL`: completion scripts for the way the command is typed, `cargo pgtest …`.
//!
//! Each shell reaches an external cargo command's completion its own way:
//! - bash: cargo's own completion (bash-completion 2.12 or newer) hands `cargo pgtest …` to the completion
//!   of the command `cargo-pgtest`, with the words as `cargo-pgtest …`; so the script completes
//!   `cargo-pgtest`.
//! - zsh: cargo's `_cargo` calls a function named `_cargo-pgtest` for `cargo pgtest …`, with the words from
//!   `pgtest` on; the script defines that function (and completes `cargo-pgtest` too).
//! - fish, elvish, PowerShell: nothing hands over, so the script completes `cargo` when its first word is
//!   `pgtest`. fish adds completions to the ones it has; elvish and PowerShell hold one completer per
//!   command, so there the script's completer for `cargo` takes the place of another one.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Writes the completion script for `shell`.
pub(crate) fn write(shell: Shell, out: &mut dyn Write) {
    match shell {
        Shell::Bash => {
            // clap_complete names a subcommand's case after its bin name with `-` replaced by
            // `__subcmd__`, but reaches it from the root's function name, where `-` became `__`: a
            // subcommand under `cargo__pgtest` is found under both names (a `cargo-pgtest` one never is).
            let mut command = named(Cli::command(), "cargo-pgtest", "cargo__pgtest");
            clap_complete::generate(shell, &mut command, "cargo-pgtest", out);
        }
        Shell::Zsh => {
            let mut command = named(Cli::command(), "cargo-pgtest", "cargo-pgtest");
            clap_complete::generate(shell, &mut command, "cargo-pgtest", out);
        }
        Shell::Fish => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut as_cargo_subcommand(), "cargo", &mut script);
            // clap names its helper functions after the command (`__fish_cargo_…`); fish's own cargo
            // completion may define functions of those names, so ours get names of their own.
            let script =
                String::from_utf8_lossy(&script).replace("__fish_cargo_", "__fish_cargo_pgtest_");
            let _ = out.write_all(script.as_bytes());
        }
        _ => clap_complete::generate(shell, &mut as_cargo_subcommand(), "cargo", out),
    }
}

/// `cargo` with `pgtest` as its one subcommand: the shape the command line is typed in.
fn as_cargo_subcommand() -> clap::Command {
    clap::Command::new("cargo")
        .bin_name("cargo")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .subcommand(Cli::command().name("pgtest"))
}

/// `command` named and invoked as `name`, its subcommands' bin names `<prefix> <subcommand>` (clap would
/// otherwise keep the ones the derive gave, `cargo pgtest <subcommand>`).
fn named(command: clap::Command, name: &'static str, prefix: &'static str) -> clap::Command {
    command.name(name).bin_name(name).mut_subcommands(|sub| {
        let bin_name = format!("{prefix} {}", sub.get_name());
        sub.bin_name(bin_name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        write(shell, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_shell_gets_a_script_that_knows_the_flags_and_commands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let text = script(shell);
            for known in [
                "partition",
                "no-tests",
                "keep-failed",
                "manifest-path",
                "list",
                "psql",
            ] {
                assert!(text.contains(known), "{shell}: no {known:?} in\n{text}");
            }
        }
    }

    #[test]
    fn the_shapes_completed_pass_clap_s_own_checks() {
        as_cargo_subcommand().debug_assert();
        named(Cli::command(), "cargo-pgtest", "cargo__pgtest").debug_assert();
    }

    #[test]
    fn bash_and_zsh_complete_the_command_cargo_hands_over() {
        let bash = script(Shell::Bash);
        assert!(
            bash.contains(
                "complete -F _cargo__pgtest -o nosort -o bashdefault -o default cargo-pgtest"
            ),
            "{bash}"
        );
        let zsh = script(Shell::Zsh);
        assert!(zsh.starts_with("#compdef cargo-pgtest"), "{zsh}");
        assert!(zsh.contains("_cargo-pgtest() {"), "{zsh}");
    }

    #[test]
    fn the_other_shells_complete_cargo_pgtest() {
        let fish = script(Shell::Fish);
        assert!(
            fish.contains("complete -c cargo -n \"__fish_cargo_pgtest_using_subcommand pgtest;"),
            "{fish}"
        );
        assert!(
            !fish.contains("__fish_cargo_needs"),
            "only renamed helpers: {fish}"
        );
        let elvish = script(Shell::Elvish);
        assert!(
            elvish.contains("edit:completion:arg-completer[cargo]"),
            "{elvish}"
        );
        assert!(elvish.contains("'cargo;pgtest'"), "{elvish}");
        let powershell = script(Shell::PowerShell);
        assert!(powershell.contains("-CommandName 'cargo'"), "{powershell}");
        assert!(powershell.contains("'cargo;pgtest'"), "{powershell}");
    }
}
