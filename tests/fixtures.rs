//! Every fixture model, imported and run on the reference interpreter,
//! against onnxruntime's outputs (the independent oracle, saved by
//! tools/make_fixtures.py).

mod common;
use common::*;
use specc_interp::{Cpu, Session, cpu_device};
use specc_ir::Literal;

const TOL: Tolerance = Tolerance::Abs(1e-4);

fn session(model: &std::path::Path) -> Session<Cpu> {
    let m = specc_onnx::import_file(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    Session::new(m.graph, &m.weights, cpu_device()).unwrap()
}

fn check_case(arch: &str, model: &str, case: &str) {
    let dir = fixture(arch);
    let s = session(&dir.join(model));
    let inputs = read(&dir.join(format!("reference/{case}.in.safetensors")));
    let want = read(&dir.join(format!("reference/{case}.out.safetensors")));
    let named: Vec<(&str, &Literal)> = inputs.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let got = s.run_named(&named).unwrap_or_else(|e| panic!("{arch} {case}: {e}"));
    for (name, w) in &want {
        let g = &got.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{arch} {case}: no output {name}")).1;
        let d = compare(&format!("{arch} {case} {name}"), g, w, TOL).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{arch} {case} {name}: max abs diff {d:e}");
    }
}

#[test]
fn nocache_matches_onnxruntime() {
    for arch in ARCHS {
        check_case(arch, "nocache.onnx", "nocache");
    }
}

#[test]
fn prefill_matches_onnxruntime() {
    for arch in ARCHS {
        check_case(arch, "with_past/model.onnx", "prefill");
    }
}

#[test]
fn decode_matches_onnxruntime() {
    for arch in ARCHS {
        check_case(arch, "with_past/model.onnx", "decode");
    }
}
