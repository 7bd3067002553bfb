//! A test hook that crashes or fails the artifact commit at a chosen step,
//! so that tests can prove the output path holds a complete artifact at
//! every instant (`tests/output_dir.rs`).
//!
//! `SPECC_TEST_FAULT=commit:N` aborts the process (as a crash or `kill -9`
//! would end it) when a commit reaches its filesystem step N (counted from
//! 0); `SPECC_TEST_FAULT=commit:N:error` makes that step fail with an I/O
//! error instead. Unset, it costs one environment lookup per commit.

pub const ENV: &str = "SPECC_TEST_FAULT";

/// The steps of one commit.
pub(crate) struct Steps {
    next: usize,
    /// The step to fault at, and whether to fail (true) or crash.
    fault: Option<(usize, bool)>,
}

impl Steps {
    pub(crate) fn new() -> Steps {
        let fault = std::env::var(ENV).ok().and_then(|spec| {
            let mut parts = spec.split(':');
            (parts.next() == Some("commit")).then_some(())?;
            let n = parts.next()?.parse().ok()?;
            Some((n, parts.next() == Some("error")))
        });
        Steps { next: 0, fault }
    }

    /// Marks the next filesystem step; crashes or fails here if the hook
    /// says so.
    pub(crate) fn step(&mut self, what: &str) -> std::io::Result<()> {
        let n = self.next;
        self.next += 1;
        match self.fault {
            Some((at, true)) if at == n => {
                Err(std::io::Error::other(format!("{ENV}: injected I/O error at commit step {n} ({what})")))
            }
            Some((at, false)) if at == n => {
                eprintln!("{ENV}: crashing at commit step {n} ({what})");
                std::process::abort()
            }
            _ => Ok(()),
        }
    }
}
