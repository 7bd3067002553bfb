//! `specc`: compile ONNX draft/target models for speculative decoding on
//! AWS Trainium, and run them.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "specc", version = env!("SPECC_VERSION"), about = "Speculative-decoding compiler and runtime for LLMs on AWS Trainium")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print an ONNX model's interface, size, op histogram and unsupported ops.
    Inspect {
        /// The ONNX model.
        model: PathBuf,
    },
    /// Run an ONNX model once on the reference interpreter.
    Eval {
        /// The ONNX model.
        model: PathBuf,
        /// Input tensors, named as the model's inputs (safetensors).
        #[arg(long)]
        inputs: PathBuf,
        /// Where to write the outputs, named as the model's outputs (safetensors).
        #[arg(long)]
        output: PathBuf,
        /// Bind a symbolic dim and specialize to static shapes first (repeatable).
        #[arg(long = "dim", value_name = "NAME=VALUE")]
        dims: Vec<String>,
    },
}

fn report(e: &dyn std::error::Error) -> String {
    let mut s = format!("error: {e}");
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(&format!("\n  caused by: {inner}"));
        src = inner.source();
    }
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<String, Box<dyn std::error::Error>> = match cli.command {
        Command::Inspect { model } => specc::commands::inspect::inspect(&model).map_err(Into::into),
        Command::Eval { model, inputs, output, dims } => {
            specc::commands::eval::eval(&model, &inputs, &output, &dims).map_err(Into::into)
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
