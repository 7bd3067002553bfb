//! Containing a panic in a dependency: a few libraries specc calls on
//! untrusted bytes panic on some malformed inputs instead of returning an
//! error (onnx-ir's protobuf parser, the tokenizers crate's decoder
//! configuration). Their calls go through [`contain`], which turns such a
//! panic into an error message for a typed error, and tells the process's
//! panic hook (`is_contained`) to stay quiet, since nothing is wrong with
//! specc. specc's own code never relies on this: a panic of its own is a
//! bug and reported as one.

use std::cell::Cell;

thread_local! {
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread is inside [`contain`] (panic hooks use it to
/// keep quiet about a panic that becomes an error).
pub fn is_contained() -> bool {
    CONTAINED.with(|c| c.get() > 0)
}

/// A dependency's error message, cut to a readable length: parsers quote
/// the value they choke on, and in a hostile file that value can be a
/// gigabyte long.
pub fn brief(message: impl std::fmt::Display) -> String {
    const MAX: usize = 600;
    let s = message.to_string();
    if s.len() <= MAX {
        return s;
    }
    let cut = (0..=MAX).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    format!("{}... ({} more bytes)", &s[..cut], s.len() - cut)
}

/// Runs `f`; a panic inside it becomes `Err(its message)`.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get() - 1));
    r.map_err(|payload| {
        brief(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into()),
        )
    })
}
