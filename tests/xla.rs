//! Emitted HLO on real XLA: every fixture model (prefill and decode
//! specializations) and every ONNX conformance case the interpreter passes
//! are lowered to HLO, written as text and proto, and run by
//! tools/xla_check.py on jax's XLA CPU, which compares both forms with the
//! reference interpreter. Outcomes are pinned in tests/xla/expectations.txt.
//!
//! Needs the pinned jax in `.venv-ci` (`tools/setup-ci-venv.sh`, which
//! `.ci/run` and the README's test command run first); without it this test
//! fails and says how to get it.

mod common;
use common::*;
use specc_interp::{Cpu, Session, cpu_device};
use specc_ir::{Graph, Literal, WeightStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SPECC_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv-ci/bin/python");
    assert!(
        venv.exists(),
        "the XLA check needs the pinned jax: run tools/setup-ci-venv.sh (or set SPECC_PYTHON to a python with tools/requirements-ci.txt)"
    );
    venv
}

/// How close XLA must come: `atol + rtol * |expected|` per element, or a
/// fraction of the largest expected magnitude (for bf16, whose rounding
/// flips move single elements by a bf16 ulp of their inputs, not of
/// themselves).
#[derive(Clone, Copy)]
enum Tol {
    Both(f64),
    OfScale(f64),
}

/// Writes one case directory; the interpreter's outputs are the expectation.
fn write_case(
    dir: &Path,
    g: &Graph,
    weights: &WeightStore,
    inputs: &[Literal],
    tol: Tol,
    aliases: &[specc_hlo::Alias],
) -> Result<(), String> {
    let module = specc_hlo::lower(g, aliases).map_err(|e| e.to_string())?;
    let s = Session::<Cpu>::new(g.clone(), weights, cpu_device()).map_err(|e| e.to_string())?;
    let names: Vec<String> = g.params().iter().map(|&p| g.node(p).name.clone()).collect();
    let named: Vec<(&str, &Literal)> = names.iter().map(String::as_str).zip(inputs).collect();
    let outs = s.run_named(&named).map_err(|e| e.to_string())?;
    let mut params: Vec<(String, Literal)> =
        inputs.iter().enumerate().map(|(i, l)| (i.to_string(), l.clone())).collect();
    for w in g.weights() {
        let e = weights.get(&w.name).ok_or("weight without data")?;
        let bytes = e.bytes.read().map_err(|e| e.to_string())?;
        let lit = Literal::from_le_bytes(w.ty.dtype, w.ty.shape.as_fixed().unwrap(), &bytes).unwrap();
        params.push((params.len().to_string(), lit));
    }
    let expected: Vec<(String, Literal)> = outs.into_iter().enumerate().map(|(i, (_, l))| (i.to_string(), l)).collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("module.hlo.txt"), specc_hlo::to_text(&module)).unwrap();
    std::fs::write(dir.join("module.hlo.pb"), specc_hlo::to_proto_bytes(&module)).unwrap();
    specc::tensor_io::write(&dir.join("inputs.safetensors"), &params).map_err(|e| e.to_string())?;
    specc::tensor_io::write(&dir.join("expected.safetensors"), &expected).map_err(|e| e.to_string())?;
    let (atol, rtol) = match tol {
        Tol::Both(t) => (t, t),
        Tol::OfScale(f) => {
            let scale = expected.iter().flat_map(|(_, l)| l.to_f64_vec()).map(f64::abs).fold(0.0, f64::max);
            (f * scale, 0.0)
        }
    };
    std::fs::write(dir.join("case.json"), format!("{{\"atol\": {atol:e}, \"rtol\": {rtol:e}}}")).unwrap();
    Ok(())
}

fn fixture_cases(root: &Path, prepared: &mut BTreeMap<String, Result<(), String>>) {
    for arch in ARCHS {
        for (model, case) in
            [("nocache.onnx", "nocache"), ("with_past/model.onnx", "prefill"), ("with_past/model.onnx", "decode")]
        {
            let dir = fixture(arch);
            let m = specc_onnx::import_file(&dir.join(model)).unwrap();
            let ins = read(&dir.join(format!("reference/{case}.in.safetensors")));
            let inputs: Vec<Literal> = m
                .graph
                .params()
                .iter()
                .map(|&p| ins.iter().find(|(n, _)| *n == m.graph.node(p).name).unwrap().1.clone())
                .collect();
            let name = format!("fixture_{arch}_{case}");
            let r = specialize_for(&m, &inputs)
                .and_then(|g| write_case(&root.join(&name), &g, &m.weights, &inputs, Tol::Both(1e-4), &[]));
            prepared.insert(name, r);
            // bf16 weights and weight matmuls; XLA rounds like the interpreter,
            // up to f32 accumulation order, hence a bf16-level tolerance: an
            // order difference can flip one activation's bf16 rounding (one
            // ulp, 0.4%) and carry through the layers (specc_interp's `dot`
            // note). Which order XLA's and burn's kernels take depends on the
            // host's vector ISA: on an AVX-512 host single logits of the llama
            // fixture differ by up to 0.015 (a 10% change of a -0.16 logit;
            // the largest is 6.6), where an AVX2 host stayed under 1e-3. So
            // the bound is 1% of the largest output magnitude; it still fails
            // a broken bf16 path: bf16 drifts from f32 by 0.2 (3%) on the
            // same case (tests/bf16.rs).
            let name = format!("fixture_{arch}_{case}_bf16");
            let r = specialize_for(&m, &inputs).and_then(|g| {
                let (g, w) = specc_opt::to_bf16(&g, &m.weights).map_err(|e| e.to_string())?;
                write_case(&root.join(&name), &g, &w, &inputs, Tol::OfScale(1e-2), &[])
            });
            prepared.insert(name, r);
            // The Neuron profile: s64 narrowed to s32, checked by the trn1 rules.
            let name = format!("fixture_{arch}_{case}_trn1");
            let r = specialize_for(&m, &inputs).and_then(|g| {
                let (g, _) = specc_opt::narrow_to_s32(&g, &Default::default()).map_err(|e| e.to_string())?;
                let module = specc_hlo::lower(&g, &[]).map_err(|e| e.to_string())?;
                specc_hlo::check(&module, specc_hlo::Target::Trn1).map_err(|v| format!("{v:?}"))?;
                let narrowed: Vec<Literal> = inputs.iter().map(narrow_literal).collect();
                write_case(&root.join(&name), &g, &m.weights, &narrowed, Tol::Both(1e-4), &[])
            });
            prepared.insert(name, r);
        }
    }
}

fn narrow_literal(l: &Literal) -> Literal {
    match &l.data {
        specc_ir::LiteralData::I64(v) => {
            Literal::new(l.shape.clone(), specc_ir::LiteralData::I32(v.iter().map(|&x| x as i32).collect())).unwrap()
        }
        _ => l.clone(),
    }
}

/// A state update with an input/output alias (the shape of a KV-cache
/// write): `state'[pos..pos+2] = x`, output 0 aliasing parameter 0.
fn alias_case(root: &Path, prepared: &mut BTreeMap<String, Result<(), String>>) {
    use specc_ir::{DType, GraphBuilder, LiteralData, Op, TensorType};
    let mut b = GraphBuilder::new("state_update");
    let state = b.parameter("state", TensorType::fixed(DType::F32, &[2, 6])).unwrap();
    let x = b.parameter("x", TensorType::fixed(DType::F32, &[2, 2])).unwrap();
    let pos = b.parameter("pos", TensorType::scalar(DType::I32)).unwrap();
    let zero = b.constant("zero", Literal::scalar_i32(0)).unwrap();
    let upd = b.add("update", Op::DynamicUpdateSlice, &[state, x, zero, pos]).unwrap();
    let sum = b.add("sum", Op::Reduce { op: specc_ir::ReduceOp::Sum, axes: vec![0, 1] }, &[upd]).unwrap();
    b.output("state_out", upd).unwrap();
    b.output("total", sum).unwrap();
    let g = b.finish().unwrap();
    let inputs = vec![
        Literal::new(vec![2, 6], LiteralData::F32((0..12).map(|v| v as f32).collect())).unwrap(),
        Literal::new(vec![2, 2], LiteralData::F32(vec![-1.0, -2.0, -3.0, -4.0])).unwrap(),
        Literal::scalar_i32(3),
    ];
    let aliases = [specc_hlo::Alias { output: 0, param: 0 }];
    let r = write_case(&root.join("alias_state_update"), &g, &WeightStore::new(), &inputs, Tol::Both(0.0), &aliases);
    prepared.insert("alias_state_update".into(), r);
}

fn conformance_cases(root: &Path, prepared: &mut BTreeMap<String, Result<(), String>>) {
    let cases = repo().join(".cache/onnx-node-tests");
    let expectations = std::fs::read_to_string(repo().join("tests/conformance/expectations.txt")).unwrap();
    assert!(cases.join(".complete-1.22.0").exists(), "run the conformance test first (it fetches the cases)");
    for line in expectations.lines().filter(|l| l.ends_with(" pass")) {
        let name = line.split(' ').next().unwrap();
        let dir = cases.join(name);
        let r = (|| {
            let m = specc_onnx::import_file(&dir.join("model.onnx")).map_err(|e| e.to_string())?;
            let inputs = numbered_pbs(&dir.join("test_data_set_0"), "input_")?;
            let g = specialize_for(&m, &inputs)?;
            write_case(&root.join(format!("onnx_{name}")), &g, &m.weights, &inputs, Tol::Both(1e-5), &[])
        })();
        prepared.insert(format!("onnx_{name}"), r);
    }
}

#[test]
fn emitted_hlo_runs_on_xla_cpu_like_the_interpreter() {
    let py = python();
    // The conformance cases must be present (the conformance test fetches them).
    let status =
        std::process::Command::new("python3").arg(repo().join("tools/fetch_onnx_conformance.py")).status().unwrap();
    assert!(status.success());
    let root = repo().join("target/xla-cases");
    let _ = std::fs::remove_dir_all(&root);
    let mut prepared = BTreeMap::new();
    fixture_cases(&root, &mut prepared);
    alias_case(&root, &mut prepared);
    conformance_cases(&root, &mut prepared);
    let out = std::process::Command::new(&py).arg(repo().join("tools/xla_check.py")).arg(&root).output().unwrap();
    assert!(out.status.success(), "xla_check.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    let results: BTreeMap<String, Option<String>> =
        serde_json::from_str(&std::fs::read_to_string(root.join("results.json")).unwrap()).unwrap();
    let mut outcomes = BTreeMap::new();
    for (name, prep) in prepared {
        let outcome = match prep {
            Err(e) => Err(format!("not emitted: {e}")),
            Ok(()) => match results.get(&name) {
                Some(None) => Ok(()),
                Some(Some(reason)) => Err(reason.clone()),
                None => Err("xla_check.py gave no result".into()),
            },
        };
        outcomes.insert(name, outcome);
    }
    let fixtures = outcomes.iter().filter(|(n, r)| n.starts_with("fixture_") && r.is_ok()).count();
    let onnx = outcomes.iter().filter(|(n, r)| n.starts_with("onnx_") && r.is_ok()).count();
    eprintln!(
        "XLA CPU agrees with the interpreter: {fixtures}/36 fixture specializations (xla, xla+bf16 and trn1 profiles), {onnx}/{} conformance cases",
        outcomes.keys().filter(|n| n.starts_with("onnx_")).count()
    );
    check_expectations(
        &repo().join("tests/xla/expectations.txt"),
        "HLO on XLA CPU expectations (tests/xla.rs).",
        &outcomes,
    );
}

/// One device call of the generation loop, as the reference backend ran it.
struct Call {
    graph: String,
    inputs: Vec<(String, Literal)>,
    state_before: Vec<(String, Literal)>,
    returned: Vec<(String, Literal)>,
    state_after: Vec<(String, Literal)>,
}

/// The reference backend, recording every call with the state around it.
struct Recording {
    inner: specc_exec::Reference,
    manifest: Option<specc_artifact::Manifest>,
    calls: std::rc::Rc<std::cell::RefCell<Vec<Call>>>,
}

impl Recording {
    fn state_names(&self, graph: &str) -> Vec<String> {
        let g = self.manifest.as_ref().unwrap().graphs.iter().find(|g| g.name == graph).unwrap();
        g.outputs.iter().filter_map(|o| o.aliases_parameter).map(|p| g.parameters[p].name.clone()).collect()
    }

    fn snapshot(&self, names: &[String]) -> Vec<(String, Literal)> {
        names.iter().map(|n| (n.clone(), self.inner.state(n).unwrap())).collect()
    }
}

impl specc_exec::Backend for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn load(&mut self, a: &specc_artifact::Artifact) -> Result<(), specc_exec::BackendError> {
        self.manifest = Some(a.manifest.clone());
        self.inner.load(a)
    }

    fn execute(
        &mut self,
        graph: &str,
        inputs: &[(&str, &Literal)],
    ) -> Result<Vec<(String, Literal)>, specc_exec::BackendError> {
        let names = self.state_names(graph);
        let state_before = self.snapshot(&names);
        let returned = self.inner.execute(graph, inputs)?;
        let state_after = self.snapshot(&names);
        self.calls.borrow_mut().push(Call {
            graph: graph.into(),
            inputs: inputs.iter().map(|(n, l)| (n.to_string(), (*l).clone())).collect(),
            state_before,
            returned: returned.clone(),
            state_after,
        });
        Ok(returned)
    }
}

/// Writes one recorded call as an XLA case: the artifact's own HLO files,
/// every parameter (call inputs, state before, weights), and every output
/// the reference produced (returned values, state after).
fn call_case(dir: &Path, a: &specc_artifact::Artifact, call: &Call, weights: &BTreeMap<String, WeightStore>) {
    let g = a.manifest.graphs.iter().find(|g| g.name == call.graph).unwrap();
    let mut params = Vec::new();
    for p in &g.parameters {
        let lit = match p.kind.as_str() {
            "weight" => {
                let store = &weights[p.model.as_ref().unwrap()];
                let e = store.get(&p.name).unwrap();
                Literal::from_le_bytes(e.ty.dtype, p.shape.clone(), &e.bytes.read().unwrap()).unwrap()
            }
            _ => call
                .inputs
                .iter()
                .chain(&call.state_before)
                .find(|(n, _)| *n == p.name)
                .unwrap_or_else(|| panic!("no value for {}", p.name))
                .1
                .clone(),
        };
        params.push((p.index.to_string(), lit));
    }
    let expected: Vec<(String, Literal)> = g
        .outputs
        .iter()
        .map(|o| {
            let v = match o.aliases_parameter {
                Some(pi) => call.state_after.iter().find(|(n, _)| *n == g.parameters[pi].name).unwrap().1.clone(),
                None => call.returned.iter().find(|(n, _)| *n == o.name).unwrap().1.clone(),
            };
            (o.index.to_string(), v)
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("module.hlo.txt"), a.read(&g.hlo_txt).unwrap()).unwrap();
    std::fs::write(dir.join("module.hlo.pb"), a.read(&g.hlo_pb).unwrap()).unwrap();
    specc::tensor_io::write(&dir.join("inputs.safetensors"), &params).unwrap();
    specc::tensor_io::write(&dir.join("expected.safetensors"), &expected).unwrap();
    std::fs::write(dir.join("case.json"), "{\"atol\": 1e-4, \"rtol\": 1e-4}").unwrap();
}

/// The speculation loop's every device call (prefill, fused rounds, greedy
/// and seeded sampling, a draft that always agrees and one that never does)
/// replayed on XLA CPU from the artifact's own HLO: the same accepted
/// counts, tokens and cache contents as the reference backend, call by call.
#[test]
fn speculation_rounds_on_xla_match_the_reference_call_by_call() {
    let py = python();
    let root = repo().join("target/xla-cases-speculation");
    let _ = std::fs::remove_dir_all(&root);
    let path = fixture("qwen2").join("with_past/model.onnx");
    let target = decoder("target", &path);
    let drafts = [("self", decoder("draft", &path)), ("contrarian", contrarian(&path))];
    let prompt = greedy_prompt("qwen2");
    let mut names = Vec::new();
    for (tag, d) in &drafts {
        let out = root.join(format!("artifact-{tag}"));
        let spec = specc_spec::SpecConfig { ks: vec![3], capacity: 48, buckets: vec![16] };
        let sources = specc_driver::compile::GenerationSources {
            target: "qwen2".into(),
            eos_token_ids: vec![],
            tokenizer: None,
            inputs: None,
        };
        specc_driver::compile::compile_models(&target, Some((d, tag)), &sources, &out, &Default::default(), &spec)
            .unwrap();
        let a = specc_artifact::Artifact::open(&out).unwrap();
        let weights: BTreeMap<String, WeightStore> =
            a.manifest.models.iter().map(|m| (m.name.clone(), a.weights(&m.name).unwrap())).collect();
        for sampling in [None, Some(specc_exec::Sampling { temperature: 0.9, top_k: 50, top_p: 0.95, seed: 7 })] {
            let calls = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let rec = Recording { inner: specc_exec::Reference::default(), manifest: None, calls: calls.clone() };
            let mut engine = specc_exec::Engine::load(&a, rec).unwrap();
            let o = specc_exec::GenerateOptions {
                ignore_eos: true,
                sampling,
                ..specc_exec::GenerateOptions::greedy(12, specc_exec::Mode::Draft)
            };
            engine.generate(&prompt, &o, &mut |_| {}).unwrap();
            let mode = if sampling.is_some() { "sample" } else { "greedy" };
            for (i, call) in calls.borrow().iter().enumerate() {
                let name = format!("{tag}_{mode}_{i:02}_{}", call.graph);
                call_case(&root.join(&name), &a, call, &weights);
                names.push(name);
            }
        }
    }
    let out = std::process::Command::new(&py).arg(repo().join("tools/xla_check.py")).arg(&root).output().unwrap();
    assert!(out.status.success(), "xla_check.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    let results: BTreeMap<String, Option<String>> =
        serde_json::from_str(&std::fs::read_to_string(root.join("results.json")).unwrap()).unwrap();
    let fused = names.iter().filter(|n| n.contains("fused")).count();
    let bad: Vec<String> = names
        .iter()
        .filter_map(|n| match results.get(n) {
            Some(None) => None,
            other => Some(format!("{n}: {other:?}")),
        })
        .collect();
    eprintln!("{} calls replayed on XLA ({fused} fused rounds), {} differ", names.len(), bad.len());
    assert!(bad.is_empty(), "XLA disagrees with the reference backend:\n{}", bad.join("\n"));
}
