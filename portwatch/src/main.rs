use clap::Parser;

use portwatch::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => portwatch::cmd::trace::run(args),
        Command::Top(args) => portwatch::cmd::top::run(args),
        Command::Record(args) => portwatch::cmd::record::run(args),
        Command::Export(args) => portwatch::cmd::export::run(args),
        Command::Replay(args) => portwatch::cmd::replay::run(args),
        Command::Report(args) => portwatch::cmd::report::run(args),
        Command::Exporter(args) => portwatch::cmd::exporter::run(args),
        Command::Doctor(args) => portwatch::cmd::doctor::run(args),
        Command::Assets(args) => portwatch::cmd::assets::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portwatch: error: {e:#}");
            if e.downcast_ref::<portwatch::cmd::UsageError>().is_some() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
