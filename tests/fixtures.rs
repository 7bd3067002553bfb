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

/// Specialized to the reference inputs' shapes: no shape arithmetic left,
/// every value static, same outputs.
fn check_specialized(arch: &str, model: &str, case: &str) -> (usize, usize) {
    let dir = fixture(arch);
    let m = specc_onnx::import_file(&dir.join(model)).unwrap();
    let inputs = read(&dir.join(format!("reference/{case}.in.safetensors")));
    let want = read(&dir.join(format!("reference/{case}.out.safetensors")));
    let shapes: Vec<(&str, &[usize])> = inputs.iter().map(|(n, l)| (n.as_str(), l.shape.as_slice())).collect();
    let bindings = specc_opt::Bindings::from_shapes(&m.graph, &shapes).unwrap();
    let (g, report) = specc_opt::specialize(&m.graph, &bindings).unwrap_or_else(|e| panic!("{arch} {case}: {e}"));
    specc_ir::verify::verify_static(&g).unwrap();
    assert!(g.nodes().iter().all(|n| !n.op.is_shape_computing() && n.ty.shape.is_static()));
    eprintln!(
        "{arch} {model} {case}: {} nodes as imported ({} shape-computing) -> {} specialized, {} folded",
        report.nodes_before, report.shape_ops_before, report.nodes_after, report.folded
    );
    let s = Session::<Cpu>::new(g, &m.weights, cpu_device()).unwrap();
    let named: Vec<(&str, &Literal)> = inputs.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let got = s.run_named(&named).unwrap_or_else(|e| panic!("{arch} {case}: {e}"));
    for (name, w) in &want {
        let g = &got.iter().find(|(n, _)| n == name).unwrap().1;
        compare(&format!("{arch} {case} {name} (specialized)"), g, w, TOL).unwrap_or_else(|e| panic!("{e}"));
    }
    (report.nodes_before, report.nodes_after)
}

#[test]
fn specialized_graphs_are_static_and_match_onnxruntime() {
    for arch in ARCHS {
        check_specialized(arch, "nocache.onnx", "nocache");
        check_specialized(arch, "with_past/model.onnx", "prefill");
        check_specialized(arch, "with_past/model.onnx", "decode");
    }
}

/// Greedy decoding with a growing cache, as onnxruntime did it;
/// `specialize` re-specializes the graph for every step's shapes.
fn greedy(arch: &str, specialize: bool) -> Vec<i64> {
    let m = specc_onnx::import_file(&fixture(arch).join("with_past/model.onnx")).unwrap();
    let want = greedy_reference(arch);
    let prompt = greedy_prompt(arch);
    let tokens = if specialize {
        greedy_decode(&m, &prompt, want.len(), &|g: &specc_ir::Graph, w: &specc_ir::WeightStore| (g.clone(), w.clone()))
    } else {
        greedy_decode_as_imported(&m, &prompt, want.len())
    };
    assert_eq!(tokens, want, "{arch}: greedy continuation differs from onnxruntime's (specialized: {specialize})");
    tokens
}

#[test]
fn greedy_continuation_matches_onnxruntime_as_imported() {
    for arch in ARCHS {
        greedy(arch, false);
    }
}

#[test]
fn greedy_continuation_matches_onnxruntime_specialized() {
    for arch in ARCHS {
        greedy(arch, true);
    }
}

/// burn-ndarray (the design card's backend) runs the same graphs to the
/// same tolerance.
#[test]
fn ndarray_backend_matches_onnxruntime_too() {
    for arch in ARCHS {
        let dir = fixture(arch);
        let m = specc_onnx::import_file(&dir.join("with_past/model.onnx")).unwrap();
        let s = Session::<specc_interp::NdArray>::new(m.graph, &m.weights, Default::default()).unwrap();
        let inputs = read(&dir.join("reference/prefill.in.safetensors"));
        let want = read(&dir.join("reference/prefill.out.safetensors"));
        let named: Vec<(&str, &Literal)> = inputs.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let got = s.run_named(&named).unwrap();
        for (name, w) in &want {
            let g = &got.iter().find(|(n, _)| n == name).unwrap().1;
            compare(&format!("{arch} prefill {name} (ndarray)"), g, w, TOL).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
