//! The commands, one module each (or per family). Each parses its locations, then
//! calls the library; this module picks one and says how its output behaves.

mod batch;
mod bucket;
mod cat;
mod cleanup;
mod config;
mod copy;
mod cp;
mod doctor;
mod ls;
mod mv;
mod presign;
mod rm;
mod sync;
mod transfer;

use anyhow::Result;
use clap::CommandFactory;
use stor::Location;

use crate::args::{Cli, Command, ConfigAction};
use crate::context::Ctx;
use crate::exit::Exit;
use crate::output::{OnClose, Output};

/// How a command's output behaves: JSON lines or text, and what a closed stdout
/// does to it (see [`crate::output`]).
pub fn output_mode(c: &Command) -> (bool, OnClose) {
    use Command::*;
    let json = match c {
        Cp(a) => a.json,
        Sync(a) => a.json,
        _ => false,
    };
    let changes = match c {
        // To stdout (`-`, `/dev/stdout`): a download into the pipe, like cat.
        Cp(a) => !a.dry_run && !matches!(a.dst.parse(), Ok(Location::Stdio)),
        Sync(a) => !a.dry_run,
        Rm(a) => !a.dry_run,
        Cleanup(a) => !a.dry_run,
        // doctor writes probe objects and removes them at its end.
        Mv(_) | Mb(_) | Rb(_) | Doctor(_) => true,
        Ls(_) | Stat(_) | Presign(_) | Cat(_) | Du(_) | Config(_) | Completions(_) | Man
        | Version => false,
    };
    (
        json,
        if changes {
            OnClose::Finish
        } else {
            OnClose::Quit
        },
    )
}

/// Runs the command `cli` names.
pub async fn run(cli: &Cli, out: &std::sync::Arc<Output>) -> Result<Exit> {
    // These need no config: a broken config file never keeps them from working.
    match &cli.command {
        Command::Version => {
            out.say(&format!("stor {}", env!("CARGO_PKG_VERSION")));
            return Ok(Exit::Ok);
        }
        Command::Completions(a) => {
            let mut script = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "stor", &mut script);
            out.raw(&script);
            return Ok(Exit::Ok);
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            out.raw(&page);
            return Ok(Exit::Ok);
        }
        _ => {}
    }
    let ctx = Ctx::new(&cli.global, out.clone()).await?;
    match &cli.command {
        Command::Cp(a) => cp::cp(&ctx, a).await,
        Command::Mv(a) => mv::mv(&ctx, a).await,
        Command::Sync(a) => sync::sync(&ctx, a).await,
        Command::Ls(a) => ls::ls(&ctx, a).await,
        Command::Stat(a) => ls::stat(&ctx, a).await,
        Command::Du(a) => ls::du(&ctx, a).await,
        Command::Rm(a) => rm::rm(&ctx, a).await,
        Command::Presign(a) => presign::presign(&ctx, a).await,
        Command::Mb(a) => bucket::mb(&ctx, a).await,
        Command::Rb(a) => bucket::rb(&ctx, a).await,
        Command::Cleanup(a) => cleanup::cleanup(&ctx, a).await,
        Command::Cat(a) => cat::cat(&ctx, a).await,
        Command::Config(c) => match c.action {
            ConfigAction::Show => config::show(&ctx).await,
        },
        Command::Doctor(a) => doctor::doctor(&ctx, a).await,
        Command::Completions(_) | Command::Version | Command::Man => {
            unreachable!("handled above")
        }
    }
}
