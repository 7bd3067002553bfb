//! The `specc` command-line tool's library: what the subcommands do, so that
//! tests drive the same code as users.

pub mod bench;
pub mod commands;
pub mod plot;
pub mod tensor_io;
