//! `specc inspect`: the interface, size, op histogram and any unsupported
//! ops of an ONNX model, read from the protobuf directly so that it works on
//! models specc cannot import.

use crate::error::ImportError;
use crate::import::{read_model, unsupported_ops};
use crate::proto;
use std::fmt::Write;
use std::path::Path;

fn onnx_elem_size(code: i32) -> usize {
    use proto::elem::*;
    match code {
        DOUBLE | INT64 | UINT64 => 8,
        FLOAT | INT32 | UINT32 => 4,
        FLOAT16 | BFLOAT16 | INT16 | UINT16 => 2,
        _ => 1,
    }
}

/// The text `specc inspect` prints.
pub fn inspect_report(path: &Path) -> Result<String, ImportError> {
    let model = read_model(path)?;
    let graph = model.graph.as_ref().expect("read_model checks for a graph");
    let mut out = String::new();
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0);
    writeln!(out, "model     {}", path.display()).unwrap();
    writeln!(out, "producer  {} {}", model.producer_name, model.producer_version).unwrap();
    writeln!(out, "opset     {opset} (ir_version {})", model.ir_version).unwrap();

    let init: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let describe = |vi: &onnx_ir::ValueInfoProto| -> String {
        let mut n = 0;
        match proto::value_type(vi, &mut || {
            n += 1;
            specc_ir::Dim::Sym("?".into())
        }) {
            Ok(t) => format!("{:<8} {}", proto::elem_name(vi.type_.tensor_type().elem_type), t.shape),
            Err(e) => format!("({e})"),
        }
    };
    writeln!(out, "\ninputs").unwrap();
    for vi in graph.input.iter().filter(|v| !init.contains(v.name.as_str())) {
        writeln!(out, "  {:<28} {}", vi.name, describe(vi)).unwrap();
    }
    writeln!(out, "outputs").unwrap();
    for vi in &graph.output {
        writeln!(out, "  {:<28} {}", vi.name, describe(vi)).unwrap();
    }
    let mut dims: Vec<String> = Vec::new();
    for vi in graph.input.iter().filter(|v| !init.contains(v.name.as_str())) {
        if vi.type_.has_tensor_type()
            && let Some(s) = vi.type_.tensor_type().shape.as_ref()
        {
            for d in &s.dim {
                if !d.has_dim_value() && !d.dim_param().is_empty() && !dims.iter().any(|x| x == d.dim_param()) {
                    dims.push(d.dim_param().to_string());
                }
            }
        }
    }
    writeln!(out, "symbolic dims  {}", if dims.is_empty() { "(none)".to_string() } else { dims.join(", ") }).unwrap();

    let (mut params, mut bytes) = (0usize, 0usize);
    for t in &graph.initializer {
        let n: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
        params += n;
        bytes += n * onnx_elem_size(t.data_type);
    }
    writeln!(
        out,
        "parameters     {} ({}) in {} initializers",
        group(params),
        megabytes(bytes),
        graph.initializer.len()
    )
    .unwrap();

    let mut hist = std::collections::BTreeMap::new();
    for n in &graph.node {
        *hist.entry(n.op_type.as_str()).or_insert(0usize) += 1;
    }
    let mut by_count: Vec<(&str, usize)> = hist.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    writeln!(out, "\nop histogram ({} nodes, {} op types)", group(graph.node.len()), by_count.len()).unwrap();
    for chunk in by_count.chunks(4) {
        let row: Vec<String> = chunk.iter().map(|(o, c)| format!("{o:<20}{c:>6}")).collect();
        writeln!(out, "  {}", row.join("  ")).unwrap();
    }

    let unsupported = unsupported_ops(&model);
    if unsupported.is_empty() {
        writeln!(out, "\nunsupported ops: none").unwrap();
    } else {
        writeln!(out, "\n{}", ImportError::UnsupportedOps(unsupported)).unwrap();
    }
    Ok(out)
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn megabytes(bytes: usize) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}
