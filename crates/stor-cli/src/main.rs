//! The `stor` command line. Thin over the library: parse flags, build the context,
//! run one command, map the outcome to an exit status.

mod args;
mod commands;
mod doctor;
mod sync;
mod ui;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use args::{Cli, Command};
use commands::Ctx;

/// Exit status for bad usage or bad input.
const EXIT_USAGE: u8 = 2;
/// Exit status after Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

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
            return ExitCode::from(commands::EXIT_FAILED);
        }
    };
    let code = rt.block_on(async {
        tokio::select! {
            res = run(&cli) => match res {
                Ok(code) => code,
                Err(e) => report(&e),
            },
            _ = tokio::signal::ctrl_c() => {
                // The command's future is dropped here: temp files are removed and
                // multipart uploads aborted; wait for those aborts to reach the server.
                eprintln!("stor: interrupted; cleaning up");
                stor::transfer::wait_for_pending_aborts(Duration::from_secs(10)).await;
                EXIT_INTERRUPTED
            }
        }
    });
    ExitCode::from(code)
}

async fn run(cli: &Cli) -> anyhow::Result<u8> {
    if let Command::Version = &cli.command {
        println!("stor {}", env!("CARGO_PKG_VERSION"));
        return Ok(0);
    }
    if let Command::Completions(a) = &cli.command {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        clap_complete::generate(a.shell, &mut cmd, "stor", &mut std::io::stdout());
        return Ok(0);
    }
    if let Command::Man = &cli.command {
        use clap::CommandFactory;
        clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        return Ok(0);
    }
    let ctx = Ctx::new(&cli.global).await?;
    let code = match &cli.command {
        Command::Cp(a) => commands::cp(&ctx, a).await?,
        Command::Mv(a) => commands::mv(&ctx, a).await?,
        Command::Sync(a) => sync::sync(&ctx, a).await?,
        Command::Ls(a) => commands::ls(&ctx, a).await?,
        Command::Stat(a) => commands::stat(&ctx, a).await?,
        Command::Rm(a) => commands::rm(&ctx, a).await?,
        Command::Presign(a) => commands::presign(&ctx, a).await?,
        Command::Mb(a) => commands::mb(&ctx, a).await?,
        Command::Rb(a) => commands::rb(&ctx, a).await?,
        Command::Cleanup(a) => commands::cleanup(&ctx, a).await?,
        Command::Cat(a) => commands::cat(&ctx, a).await?,
        Command::Du(a) => commands::du(&ctx, a).await?,
        Command::Config(_) => commands::config_show(&ctx).await?,
        Command::Doctor(a) => doctor::doctor(&ctx, a).await?,
        Command::Completions(_) | Command::Version | Command::Man => {
            unreachable!("handled above")
        }
    };
    ctx.flush();
    Ok(code)
}

/// One line on stderr saying what failed and why; the status says what kind.
fn report(e: &anyhow::Error) -> u8 {
    let code = match e.downcast_ref::<stor::Error>() {
        Some(se)
            if matches!(
                se.kind(),
                stor::ErrorKind::InvalidInput | stor::ErrorKind::Config
            ) =>
        {
            EXIT_USAGE
        }
        _ => commands::EXIT_FAILED,
    };
    let msg = format!("{e:#}");
    eprintln!("stor: error: {}", ui::printable(&msg));
    code
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
    // The SDK's request orchestrator and signer print the resolved identity (the
    // access key id) at DEBUG/TRACE: never shown.
    let filter = if verbose >= 3 {
        format!("{level},aws_smithy_runtime::client::orchestrator=info,aws_sigv4=info")
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
