//! The official ONNX node conformance cases (from the onnx==1.22.0 wheel,
//! fetched by tools/fetch_onnx_conformance.py into .cache/, never
//! committed) whose nodes all use op types specc imports: import, run on the
//! reference interpreter as imported and specialized, compare with the
//! expected outputs (ONNX's own tolerance: rtol 1e-3, atol 1e-7).
//!
//! Some cases give shapes as data (a Reshape target as a graph input); for
//! specialization those small inputs are frozen to the case's
//! values (`specc_opt::freeze_inputs`), since a static graph cannot take a
//! shape at run time.
//!
//! `tests/conformance/expectations.txt` lists every selected case as `pass`
//! or `fail <reason>`; any other outcome fails the test. `SPECC_BLESS=1`
//! rewrites the file from the current outcomes (read the diff!).

mod common;
use specc_interp::{Cpu, Session, cpu_device};
use specc_ir::Literal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn cache() -> PathBuf {
    common::repo().join(".cache/onnx-node-tests")
}

/// Fetches the cases if the cache is missing; fails loudly if it cannot.
fn ensure_cases() -> PathBuf {
    let dir = cache();
    if !dir.join(".complete-1.22.0").exists() {
        let status = std::process::Command::new("python3")
            .arg(common::repo().join("tools/fetch_onnx_conformance.py"))
            .status()
            .expect("running python3 tools/fetch_onnx_conformance.py");
        assert!(
            status.success(),
            "could not fetch the ONNX conformance cases (python3 tools/fetch_onnx_conformance.py failed)"
        );
    }
    dir
}

fn close(got: &Literal, want: &Literal) -> Result<(), String> {
    if got.shape != want.shape || got.dtype() != want.dtype() {
        return Err(format!("got {}{:?}, expected {}{:?}", got.dtype(), got.shape, want.dtype(), want.shape));
    }
    for (i, (a, b)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == &b || (a - b).abs() <= 1e-7 + 1e-3 * b.abs();
        if !ok {
            return Err(format!("element {i}: got {a}, expected {b}"));
        }
    }
    Ok(())
}

fn run(
    graph: specc_ir::Graph,
    weights: &specc_ir::WeightStore,
    inputs: &[Literal],
    outputs: &[Literal],
) -> Result<(), String> {
    let s = Session::<Cpu>::new(graph, weights, cpu_device()).map_err(|e| e.to_string())?;
    let names: Vec<String> = s.graph().params().iter().map(|&p| s.graph().node(p).name.clone()).collect();
    if names.len() != inputs.len() {
        return Err(format!("{} inputs given, the graph takes {}", inputs.len(), names.len()));
    }
    let named: Vec<(&str, &Literal)> = names.iter().map(String::as_str).zip(inputs).collect();
    let got = s.run_named(&named).map_err(|e| e.to_string())?;
    if got.len() != outputs.len() {
        return Err(format!("{} outputs, expected {}", got.len(), outputs.len()));
    }
    for ((name, g), w) in got.iter().zip(outputs) {
        close(g, w).map_err(|e| format!("output `{name}`: {e}"))?;
    }
    Ok(())
}

/// Runs one case; `Err` carries the reason.
fn run_case(dir: &Path) -> Result<(), String> {
    let m = specc_onnx::import_file(&dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let data = dir.join("test_data_set_0");
    let inputs = common::numbered_pbs(&data, "input_")?;
    let outputs = common::numbered_pbs(&data, "output_")?;
    run(m.graph.clone(), &m.weights, &inputs, &outputs).map_err(|e| format!("as imported: {e}"))?;
    let g = common::specialize_for(&m, &inputs)?;
    run(g, &m.weights, &inputs, &outputs).map_err(|e| format!("specialized: {e}"))
}

#[test]
fn onnx_node_conformance() {
    let root = ensure_cases();
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    for d in &dirs {
        let Ok(model) = specc_onnx::read_model(&d.join("model.onnx")) else {
            continue;
        };
        let ops: Vec<String> = model.graph.node.iter().map(|n| n.op_type.clone()).collect();
        // The cases of the ops specc imports: every node's op is one of them.
        if !ops.is_empty() && ops.iter().all(|o| specc_onnx::SUPPORTED.contains(&o.as_str())) {
            cases.push((d.file_name().unwrap().to_string_lossy().to_string(), ops));
        }
    }

    let mut outcomes: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    for (name, _) in &cases {
        let dir = root.join(name);
        let r = std::panic::catch_unwind(|| run_case(&dir)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("PANIC: {msg}"))
        });
        outcomes.insert(name.clone(), r);
    }

    // Pass counts per op type (a case counts for every supported op it uses).
    let mut per_op: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (name, ops) in &cases {
        let mut seen: Vec<&str> = ops.iter().map(String::as_str).collect();
        seen.sort();
        seen.dedup();
        for op in seen {
            let e = per_op.entry(op).or_default();
            e.1 += 1;
            if outcomes[name].is_ok() {
                e.0 += 1;
            }
        }
    }
    let passed = outcomes.values().filter(|r| r.is_ok()).count();
    eprintln!("ONNX node conformance: {passed}/{} cases pass", outcomes.len());
    for (op, (p, t)) in &per_op {
        eprintln!("  {op:<20} {p:>3}/{t:<3} cases pass");
    }

    let file = common::repo().join("tests/conformance/expectations.txt");
    common::check_expectations(&file, "ONNX node conformance expectations (tests/conformance.rs).", &outcomes);
}
