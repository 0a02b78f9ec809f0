//! `portwatch assets --out-dir DIR` (hidden): the man pages and shell
//! completions, generated from the clap definitions in [`crate::cli`] so
//! they can never drift from `--help`. `cargo xtask dist` packages them.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{AssetsArgs, Cli};

/// The shells whose completions are shipped, with the file name each one's
/// loader looks for.
pub const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "portwatch.bash"),
    (Shell::Zsh, "_portwatch"),
    (Shell::Fish, "portwatch.fish"),
];

pub fn run(args: AssetsArgs) -> Result<()> {
    write_assets(&args.out_dir)?;
    eprintln!(
        "portwatch: wrote man pages and completions under {}",
        args.out_dir.display()
    );
    Ok(())
}

/// Writes `man/*.1` (one page per visible command) and
/// `completions/{portwatch.bash,_portwatch,portwatch.fish}` under `dir`.
pub fn write_assets(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("writing man pages to {}", man.display()))?;
    for &(shell, file) in SHELLS {
        let path = completions.join(file);
        let mut out =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        clap_complete::generate(shell, &mut public_command(), "portwatch", &mut out);
    }
    Ok(())
}

/// The command line without hidden subcommands (this one): clap_mangen
/// skips them, clap_complete does not, and a user should never be offered
/// `assets` by their shell.
fn public_command() -> clap::Command {
    let full = Cli::command();
    let mut public = clap::Command::new("portwatch")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        public = public.about(about.clone());
    }
    public
}
