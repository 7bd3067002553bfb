//! `specc eval model.onnx --inputs in.safetensors --output out.safetensors
//! [--dim name=value ...]`: one run on the reference interpreter, with
//! tensors named as in the ONNX file, so any runtime can be compared with
//! specc.

use specc_interp::{Cpu, Session, cpu_device};
use specc_ir::Literal;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Import(#[from] specc_onnx::ImportError),
    #[error(transparent)]
    Tensors(#[from] crate::tensor_io::TensorIoError),
    #[error(transparent)]
    Specialize(#[from] specc_opt::OptError),
    #[error(transparent)]
    Run(#[from] specc_interp::InterpError),
    #[error("{0}")]
    Usage(String),
}

/// Runs the model; with `dims`, specialized to them first. Returns a report.
pub fn eval(model: &Path, inputs: &Path, output: &Path, dims: &[String]) -> Result<String, EvalError> {
    let m = specc_onnx::import_file(model)?;
    let ins = crate::tensor_io::read(inputs)?;
    let bindings = specc_opt::Bindings::parse_flags(dims).map_err(EvalError::Usage)?;
    let mut report = String::new();
    let graph = if bindings.0.is_empty() {
        writeln!(report, "running {} as imported ({} IR nodes)", model.display(), m.graph.len()).unwrap();
        m.graph
    } else {
        let (g, r) = specc_opt::specialize(&m.graph, &bindings)?;
        writeln!(report, "specialized {}: {} -> {} IR nodes", model.display(), r.nodes_before, r.nodes_after).unwrap();
        g
    };
    let session = Session::<Cpu>::new(graph, &m.weights, cpu_device())?;
    let named: Vec<(&str, &Literal)> = ins.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let outs = session.run_named(&named)?;
    for (n, l) in &outs {
        writeln!(report, "  {n:<28} {}", l.ty()).unwrap();
    }
    crate::tensor_io::write(output, &outs)?;
    writeln!(report, "wrote {} outputs to {}", outs.len(), output.display()).unwrap();
    Ok(report)
}
