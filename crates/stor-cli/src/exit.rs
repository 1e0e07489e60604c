//! How `stor` ends: the exit statuses — the only place that knows their numbers —
//! and which status an error gets.

use std::process::ExitCode;

/// The exit status of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked was done.
    Ok,
    /// An operation failed (each failure said so on stderr).
    Failed,
    /// Bad usage or bad input: refused before anything was done for it.
    Usage,
    /// Ctrl-C, SIGTERM or SIGHUP: transfers in flight were cancelled and cleaned up.
    Interrupted,
}

impl Exit {
    /// Every status, for the help text's test.
    #[cfg(test)]
    const ALL: [Exit; 4] = [Exit::Ok, Exit::Failed, Exit::Usage, Exit::Interrupted];

    /// The number the shell sees.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Interrupted => 130,
        }
    }

    /// The status of a command that stopped with `e`: bad input or config is a
    /// usage error, anything else a failed operation.
    pub fn of_error(e: &anyhow::Error) -> Exit {
        match e.downcast_ref::<stor::Error>().map(stor::Error::kind) {
            Some(stor::ErrorKind::InvalidInput | stor::ErrorKind::Config) => Exit::Usage,
            _ => Exit::Failed,
        }
    }

    /// `Failed` when anything failed, else `Ok`.
    pub fn failed_if(failed: bool) -> Exit {
        if failed {
            Exit::Failed
        } else {
            Exit::Ok
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The statuses as `stor --help` lists them.
pub const HELP: &str =
    "Exit status: 0 ok, 1 an operation failed, 2 bad usage or bad input, 130 interrupted.";

/// A bad-usage error (exit status 2) saying what was wrong.
pub fn usage(msg: String) -> anyhow::Error {
    stor::Error::new(stor::ErrorKind::InvalidInput, msg).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_status() {
        for e in Exit::ALL {
            assert!(HELP.contains(&format!(" {} ", e.code())), "{e:?}");
        }
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        assert_eq!(Exit::of_error(&usage("x".into())), Exit::Usage);
        let config = stor::Error::new(stor::ErrorKind::Config, "x");
        assert_eq!(Exit::of_error(&config.into()), Exit::Usage);
        let denied = stor::Error::new(stor::ErrorKind::AccessDenied, "x");
        assert_eq!(Exit::of_error(&denied.into()), Exit::Failed);
        assert_eq!(Exit::of_error(&anyhow::anyhow!("x")), Exit::Failed);
    }
}
