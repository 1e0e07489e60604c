//! The `stor` command line. Thin over the library: parse flags, build the context,
//! run one command, map how it ended to an exit status (`exit.rs`).

mod args;
mod cmd;
mod context;
mod exit;
mod filter;
mod output;
mod progress;
mod urls;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use args::Cli;
use exit::Exit;
use output::{Lost, OnClose, Output};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose, cli.global.quiet);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stor: cannot start the async runtime: {e}");
            return Exit::Failed.into();
        }
    };
    let (json, on_close) = cmd::output_mode(&cli.command);
    let out = Arc::new(Output::new(cli.global.quiet, json, on_close));
    rt.block_on(run(&cli, &out)).into()
}

/// Runs the command to its end, or until Ctrl-C, SIGTERM or SIGHUP — or, for a
/// command that only reads, until its stdout is lost (see `output.rs`).
async fn run(cli: &Cli, out: &Arc<Output>) -> Exit {
    let quits = out.on_close() == OnClose::Quit;
    tokio::select! {
        biased;
        signal = stopped() => {
            // The command's future is dropped here: temp files are removed and
            // multipart uploads aborted; wait for those aborts to reach the server.
            eprintln!("stor: {signal}; cleaning up");
            stor::transfer::wait_for_pending_aborts(Duration::from_secs(10)).await;
            say_kept();
            Exit::Interrupted
        }
        lost = out.until_lost(), if quits => match lost {
            Lost::Closed => Exit::Ok,
            Lost::Failed => Exit::Failed,
        },
        res = cmd::run(cli, out) => {
            out.flush();
            match res {
                Err(e) => {
                    output::error(&e);
                    Exit::of_error(&e)
                }
                // Lines that could not be written are a failure; a reader that
                // went away is not (it asked for no more).
                Ok(Exit::Ok) if out.lost() == Some(Lost::Failed) => Exit::Failed,
                Ok(exit) => exit,
            }
        }
    }
}

/// The first of Ctrl-C (SIGINT), SIGTERM (`kill`, `timeout`, `docker stop`,
/// systemd) and SIGHUP (a closed terminal), said as the user would: each stops a
/// command the same way, cleaning up what it had in flight. A handler that cannot
/// be installed leaves that signal's default (the process ends at once).
async fn stopped() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    async fn on(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = on(SignalKind::terminate()) => "terminated (SIGTERM)",
        _ = on(SignalKind::hangup()) => "hung up (SIGHUP)",
    }
}

/// After a stop by signal: what was kept for resuming (journaled uploads and downloads) and
/// how to go on or throw it away.
fn say_kept() {
    let kept = stor::transfer::kept_for_resume();
    if kept.is_empty() {
        return;
    }
    let done: u64 = kept.iter().map(|k| k.done).sum();
    let size: u64 = kept.iter().map(|k| k.size).sum();
    eprintln!(
        "stor: kept {} interrupted transfer(s) ({done} of {size} bytes done): run the same \
         command again to resume, or `stor cleanup URL --older-than 0s` to discard them",
        kept.len()
    );
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    // Our crate at the chosen level; the SDK's chatter one level quieter below -vvv.
    // Never shown, even at -vvv: the request orchestrator and signer print the
    // resolved identity (the access key id) at DEBUG/TRACE; the config loader prints
    // every variable and profile key it reads at TRACE (`(global env)
    // AWS_ENDPOINT_URL = "http://user:password@…"`, aws_runtime::env_config), and
    // the credentials it builds, key id included, at INFO and DEBUG (aws_config):
    // capped at WARN, as below -vvv.
    let filter = if verbose >= 3 {
        format!(
            "{level},aws_smithy_runtime::client::orchestrator=info,aws_sigv4=info,\
             aws_config=warn,aws_runtime::env_config=warn"
        )
    } else {
        format!("{level},stor={level},aws_smithy_runtime=warn,aws_config=warn,hyper=warn")
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_target(false)
        // Colour codes only for a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
