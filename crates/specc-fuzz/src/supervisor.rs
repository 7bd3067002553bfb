//! Running cases in worker processes and telling outcomes apart.
//!
//! A target runs in a long-lived worker process (`specc-fuzz worker`),
//! one case at a time: the supervisor writes the case's directory on the
//! worker's stdin and reads one line back. A panic is caught in the worker
//! and reported; an abort (an allocation failure, say) or a signal
//! (SIGSEGV) ends the worker, and the supervisor reads the exit status; a
//! case that takes longer than the timeout is a hang, and the worker is
//! killed. Each time the worker is replaced, so one bad case never hides
//! the next. The worker runs under an address-space limit, so an
//! allocation that a size check should have refused fails loudly instead
//! of swapping the machine.

use crate::case::Case;
use crate::targets::Target;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// What a case did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; how far it got.
    Ok(String),
    /// A typed error (specc refused the input): the expected outcome for
    /// most mutated inputs.
    Error(String),
    Panic(String),
    /// The process aborted (SIGABRT: an allocation failure, a panic while
    /// panicking, a failed assertion in C code).
    Abort(String),
    /// Killed by another signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE).
    Signal(i32, String),
    Hang,
    /// The worker exited without a signal and without answering.
    Died(String),
}

impl Outcome {
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Error(_) => "error",
            Outcome::Panic(_) => "panic",
            Outcome::Abort(_) => "abort",
            Outcome::Signal(..) => "signal",
            Outcome::Hang => "hang",
            Outcome::Died(_) => "died",
        }
    }

    pub fn is_bug(&self) -> bool {
        !matches!(self, Outcome::Ok(_) | Outcome::Error(_))
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Ok(m) | Outcome::Error(m) | Outcome::Panic(m) | Outcome::Abort(m) | Outcome::Died(m) => m.clone(),
            Outcome::Signal(s, m) => format!("signal {s}: {m}"),
            Outcome::Hang => String::new(),
        }
    }

    /// The outcome with numbers and the case's paths taken out: cases with
    /// the same signature went the same way.
    pub fn signature(&self, case_dir: &Path) -> String {
        let msg = self.message().replace(&case_dir.display().to_string(), "<case>");
        let mut sig = String::from(self.class());
        sig.push(' ');
        let mut last_digit = false;
        for c in msg.chars().take(160) {
            if c.is_ascii_digit() {
                if !last_digit {
                    sig.push('#');
                }
                last_digit = true;
            } else {
                sig.push(c);
                last_digit = false;
            }
        }
        sig
    }
}

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub exe: PathBuf,
    pub target: Target,
    pub timeout: Duration,
    /// The worker's address-space limit, in MiB.
    pub memory_mb: u64,
}

/// A worker process for one target.
pub struct Worker {
    config: WorkerConfig,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: PathBuf,
}

impl Worker {
    pub fn spawn(config: WorkerConfig, stderr: PathBuf) -> std::io::Result<Worker> {
        let err_file = std::fs::File::create(&stderr)?;
        let mut child = Command::new(&config.exe)
            .args(["worker", "--target", config.target.name(), "--memory-mb", &config.memory_mb.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file))
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Worker { config, child, stdin, lines, stderr })
    }

    fn respawn(&mut self) -> std::io::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Worker::spawn(self.config.clone(), self.stderr.clone())?;
        Ok(())
    }

    /// What the worker said before it died (an allocation failure, a
    /// panic message): its unindented stderr lines, without backtraces.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.trim().is_empty() && !l.starts_with(' ') && !l.starts_with("note:") && l.trim() != "stack backtrace:"
            })
            .collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// Runs the case in `dir`.
    pub fn run(&mut self, dir: &Path) -> Outcome {
        let sent = writeln!(self.stdin, "{}", dir.display()).and_then(|()| self.stdin.flush());
        let answer = match sent {
            Ok(()) => self.lines.recv_timeout(self.config.timeout),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        let outcome = match answer {
            Ok(line) => {
                let (kind, msg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let msg = msg.to_string();
                return match kind {
                    "ok" => Outcome::Ok(msg),
                    "error" => Outcome::Error(msg),
                    "panic" => {
                        // The worker survives a caught panic, but its
                        // state may not: start afresh.
                        let _ = self.respawn();
                        Outcome::Panic(msg)
                    }
                    _ => Outcome::Died(format!("unexpected answer `{line}`")),
                };
            }
            Err(RecvTimeoutError::Timeout) => Outcome::Hang,
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait();
                let tail = self.stderr_tail();
                match status {
                    #[cfg(unix)]
                    Ok(s) if std::os::unix::process::ExitStatusExt::signal(&s) == Some(libc::SIGABRT) => {
                        Outcome::Abort(tail)
                    }
                    #[cfg(unix)]
                    Ok(s) if std::os::unix::process::ExitStatusExt::signal(&s).is_some() => {
                        Outcome::Signal(std::os::unix::process::ExitStatusExt::signal(&s).unwrap(), tail)
                    }
                    Ok(s) => Outcome::Died(format!("{s}: {tail}")),
                    Err(e) => Outcome::Died(e.to_string()),
                }
            }
        };
        if let Err(e) = self.respawn() {
            return Outcome::Died(format!("{}; and the worker could not be restarted: {e}", outcome.message()));
        }
        outcome
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker side: runs cases named on stdin, one answer line each on
/// the protocol stream (stdout is moved aside: `specc run` prints there).
pub fn worker_main(target: Target, memory_mb: u64) -> std::io::Result<()> {
    let mut proto = protocol_stream()?;
    limit_memory(memory_mb);
    // Fuzzed graphs are refused past 256 MiB per tensor, so that a legal
    // but huge graph is an error, not minutes of computing.
    specc_ir::limits::set_max_tensor_bytes(256 << 20);
    let last_panic = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = last_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        if specc_ir::contain::is_contained() {
            return;
        }
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        *seen.lock().unwrap() = format!("{msg}{at}");
        eprintln!("panicked: {msg}{at}");
    }));
    for line in std::io::stdin().lock().lines() {
        let dir = PathBuf::from(line?);
        let case_hash = Case::load(&dir).map(|c| c.hash()).unwrap_or_default();
        let choice = u64::from_str_radix(&case_hash[..case_hash.len().min(16)], 16).unwrap_or(0);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::targets::run_target(target, &dir, choice)));
        let answer = match result {
            Ok(Ok(stage)) => format!("ok {stage}"),
            Ok(Err(e)) => format!("error {e}"),
            Err(_) => format!("panic {}", last_panic.lock().unwrap()),
        };
        writeln!(proto, "{}", specc_ir::contain::brief(answer.replace('\n', " / ")))?;
        proto.flush()?;
    }
    Ok(())
}

/// A stream on the original stdout; stdout itself then goes to /dev/null.
#[cfg(unix)]
fn protocol_stream() -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: dup of an open descriptor; the new one is owned by the File.
    let fd = unsafe { libc::dup(1) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: both descriptors are open; dup2 replaces fd 1 atomically.
    if unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(not(unix))]
fn protocol_stream() -> std::io::Result<std::fs::File> {
    Err(std::io::Error::other("specc-fuzz workers need a Unix system"))
}

#[cfg(unix)]
fn limit_memory(mb: u64) {
    let bytes = mb.saturating_mul(1 << 20) as libc::rlim_t;
    let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: a plain struct passed by pointer for the duration of the call.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
}

#[cfg(not(unix))]
fn limit_memory(_mb: u64) {}
