//! Bad input gets a typed error that names the problem; nothing panics.

mod common;
use common::*;
use specc_interp::{Cpu, InterpError, Session, cpu_device};
use specc_ir::{Literal, LiteralData};
use specc_onnx::{ImportError, import_file};
use std::path::PathBuf;

fn bad(name: &str) -> PathBuf {
    repo().join("graphs/bad").join(name)
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specc-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn import_err(path: &std::path::Path) -> ImportError {
    match import_file(path) {
        Ok(_) => panic!("{} imported, expected an error", path.display()),
        Err(e) => e,
    }
}

#[test]
fn truncated_file_is_not_onnx() {
    let whole = std::fs::read(fixture("qwen2").join("with_past/model.onnx")).unwrap();
    let p = temp("truncated.onnx", &whole[..whole.len() / 2]);
    let e = import_err(&p);
    assert!(matches!(e, ImportError::NotOnnx { .. }), "{e:?}");
    assert!(e.to_string().contains("truncated.onnx"), "{e}");
}

#[test]
fn text_file_is_not_onnx() {
    let p = temp("readme.onnx", b"# This is a README, not a model.\nIt has text in it.\n");
    let e = import_err(&p);
    assert!(matches!(e, ImportError::NotOnnx { .. }), "{e:?}");
    assert!(e.to_string().contains("not a valid ONNX model"), "{e}");
}

#[test]
fn empty_file_is_refused() {
    let p = temp("empty.onnx", b"");
    let e = import_err(&p);
    assert!(matches!(e, ImportError::Empty { .. }), "{e:?}");
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    let e = import_err(&bad("no_such_model.onnx"));
    assert!(matches!(e, ImportError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("no_such_model.onnx"), "{e}");
}

#[test]
fn every_unsupported_op_is_listed_with_its_nodes() {
    let e = import_err(&bad("unsupported_ops.onnx"));
    let ImportError::UnsupportedOps(ops) = &e else { panic!("{e:?}") };
    let listed: Vec<(&str, Vec<&str>)> =
        ops.iter().map(|o| (o.op_type.as_str(), o.nodes.iter().map(String::as_str).collect())).collect();
    assert_eq!(listed, vec![("Erf", vec!["erf_1"]), ("TopK", vec!["topk_a", "topk_b"]), ("FastGelu", vec!["gelu_ms"])]);
    let text = e.to_string();
    assert!(text.contains("com.microsoft::FastGelu") && text.contains("topk_a, topk_b"), "{text}");
}

#[test]
fn dangling_edge_names_node_and_value() {
    let e = import_err(&bad("dangling_edge.onnx"));
    let ImportError::Dangling { node, input, .. } = &e else { panic!("{e:?}") };
    assert_eq!((node.as_str(), input.as_str()), ("add_ghost", "ghost"));
}

#[test]
fn node_missing_a_required_input() {
    let e = import_err(&bad("missing_node_input.onnx"));
    let ImportError::Node { node, message, .. } = &e else { panic!("{e:?}") };
    assert_eq!(node, "matmul_half");
    assert!(message.contains("required input 1 is missing"), "{message}");
}

#[test]
fn running_without_a_required_input() {
    let m = import_file(&bad("two_inputs.onnx")).unwrap();
    let s = Session::<Cpu>::new(m.graph, &m.weights, cpu_device()).unwrap();
    let a = Literal::new(vec![3], LiteralData::F32(vec![1.0, 2.0, 3.0])).unwrap();
    let e = s.run_named(&[("a", &a)]).unwrap_err();
    assert!(matches!(&e, InterpError::MissingInput { name, .. } if name == "b"), "{e:?}");
    let e = s.run_named(&[("a", &a), ("c", &a)]).unwrap_err();
    assert!(matches!(&e, InterpError::UnknownInput { name, .. } if name == "c"), "{e:?}");
    // Inputs whose shared dim `n` disagrees.
    let b = Literal::new(vec![2], LiteralData::F32(vec![1.0, 2.0])).unwrap();
    let e = s.run_named(&[("a", &a), ("b", &b)]).unwrap_err();
    assert!(matches!(&e, InterpError::DimMismatch { dim, .. } if dim == "n"), "{e:?}");
}

#[test]
fn eval_cli_reports_errors_without_panicking() {
    let exe = env!("CARGO_BIN_EXE_specc");
    let out = std::process::Command::new(exe)
        .args([
            "eval",
            bad("unsupported_ops.onnx").to_str().unwrap(),
            "--inputs",
            "x.safetensors",
            "--output",
            "y.safetensors",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: the model uses operators specc does not support"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
