//! Shared helpers of the integration tests: fixture paths, tolerances as
//! data, and comparisons that say what differs.
#![allow(dead_code)]

use specc_ir::{Literal, LiteralData};
use std::path::{Path, PathBuf};

pub const ARCHS: [&str; 4] = ["llama", "qwen2", "gpt2", "mistral"];

/// `specc` on the command line: (success, stdout, stderr).
pub fn specc(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specc")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(arch: &str) -> PathBuf {
    repo().join("graphs/fixtures").join(arch)
}

pub fn read(path: &std::path::Path) -> Vec<(String, Literal)> {
    specc::tensor_io::read(path).unwrap_or_else(|e| panic!("{e}"))
}

/// How close two tensors must be.
#[derive(Clone, Copy, Debug)]
pub enum Tolerance {
    Exact,
    /// Max absolute difference.
    Abs(f64),
}

/// Compares shapes, dtypes and values; returns the max abs difference.
pub fn compare(what: &str, got: &Literal, want: &Literal, tol: Tolerance) -> Result<f64, String> {
    if got.shape != want.shape {
        return Err(format!("{what}: shape {:?}, expected {:?}", got.shape, want.shape));
    }
    if got.dtype() != want.dtype() {
        return Err(format!("{what}: dtype {}, expected {}", got.dtype(), want.dtype()));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst = (0.0f64, 0usize);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let d = if a.is_nan() && b.is_nan() {
            0.0
        } else if a == b {
            0.0
        } else {
            (a - b).abs()
        };
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > worst.0 {
            worst = (d, i);
        }
    }
    let ok = match tol {
        Tolerance::Exact => worst.0 == 0.0,
        Tolerance::Abs(t) => worst.0 <= t,
    };
    if !ok {
        return Err(format!(
            "{what}: max abs diff {:e} at element {} (got {}, expected {}), tolerance {tol:?}",
            worst.0, worst.1, g[worst.1], w[worst.1]
        ));
    }
    Ok(worst.0)
}

pub fn argmax_last(l: &Literal) -> Vec<i64> {
    let LiteralData::F32(v) = &l.data else { panic!("logits are f32") };
    let n = *l.shape.last().unwrap();
    v.chunks(n)
        .map(|row| {
            let mut best = 0;
            for (i, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = i;
                }
            }
            best as i64
        })
        .collect()
}

/// Specializes an imported model to concrete inputs (given in parameter
/// order). Shapes given as data (a reshape target as a graph input, say)
/// fold once those small inputs are frozen to their values.
pub fn specialize_for(m: &specc_onnx::Model, inputs: &[Literal]) -> Result<specc_ir::Graph, String> {
    let names: Vec<String> = m.graph.params().iter().map(|&p| m.graph.node(p).name.clone()).collect();
    let shapes: Vec<(&str, &[usize])> =
        names.iter().map(String::as_str).zip(inputs.iter().map(|l| l.shape.as_slice())).collect();
    let b = specc_opt::Bindings::from_shapes(&m.graph, &shapes)?;
    match specc_opt::specialize(&m.graph, &b) {
        Ok((g, _)) => Ok(g),
        Err(specc_opt::OptError::NotStatic { .. }) => {
            let small: Vec<(&str, Literal)> = names
                .iter()
                .map(String::as_str)
                .zip(inputs.iter().cloned())
                .filter(|(_, l)| l.num_elements() <= 16)
                .collect();
            let frozen = specc_opt::freeze_inputs(&m.graph, &small).map_err(|e| format!("freezing: {e}"))?;
            Ok(specc_opt::specialize(&frozen, &b).map_err(|e| format!("as imported: ok; specializing: {e}"))?.0)
        }
        Err(e) => Err(format!("as imported: ok; specializing: {e}")),
    }
}

/// Reads a test case's numbered `.pb` tensors (`input_0.pb`, ...).
pub fn numbered_pbs(dir: &std::path::Path, prefix: &str) -> Result<Vec<Literal>, String> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let n = name.strip_prefix(prefix)?.strip_suffix(".pb")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, p)| specc_onnx::proto::read_tensor_file(&p).map_err(|e| e.to_string())).collect()
}

/// Outcome lines `<case> pass` / `<case> fail <reason>`, checked against an
/// expectations file, or written to it when SPECC_BLESS is set.
pub fn check_expectations(
    file: &std::path::Path,
    title: &str,
    outcomes: &std::collections::BTreeMap<String, Result<(), String>>,
) {
    let rendered: String = outcomes
        .iter()
        .map(|(n, r)| match r {
            Ok(()) => format!("{n} pass\n"),
            Err(e) => format!("{n} fail {}\n", e.lines().next().unwrap_or("").chars().take(160).collect::<String>()),
        })
        .collect();
    if std::env::var("SPECC_BLESS").is_ok() {
        let header = format!(
            "# {title}\n# One case per line: `<case> pass` or `<case> fail <reason>`. Regenerate with SPECC_BLESS=1.\n"
        );
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, format!("{header}{rendered}")).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e} (create it with SPECC_BLESS=1)", file.display()));
    let mut want = std::collections::BTreeMap::new();
    for line in expected.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ' ');
        let (n, verdict) = (parts.next().unwrap(), parts.next().unwrap_or(""));
        want.insert(n.to_string(), verdict == "pass");
    }
    let mut problems = Vec::new();
    for (n, r) in outcomes {
        match (want.get(n), r) {
            (None, _) => problems.push(format!("{n}: not in {}", file.display())),
            (Some(true), Err(e)) => problems.push(format!("{n}: expected to pass, failed: {e}")),
            (Some(false), Ok(())) => {
                problems.push(format!("{n}: expected to fail, now passes (update the expectations)"))
            }
            _ => {}
        }
        if let Err(e) = r
            && e.contains("PANIC")
        {
            problems.push(format!("{n}: panicked (specc must never panic): {e}"));
        }
    }
    for n in want.keys().filter(|n| !outcomes.contains_key(*n)) {
        problems.push(format!("{n}: in {} but not among the cases", file.display()));
    }
    assert!(problems.is_empty(), "{} unexpected outcomes:\n{}", problems.len(), problems.join("\n"));
}

/// onnxruntime's greedy continuation of a fixture's prompt.
pub fn greedy_reference(arch: &str) -> Vec<i64> {
    let refs = read(&fixture(arch).join("reference/greedy.safetensors"));
    refs.iter().find(|(k, _)| k == "tokens").unwrap().1.to_i64_vec().unwrap()
}

pub fn greedy_prompt(arch: &str) -> Vec<i64> {
    let refs = read(&fixture(arch).join("reference/greedy.safetensors"));
    refs.iter().find(|(k, _)| k == "prompt_ids").unwrap().1.to_i64_vec().unwrap()
}

/// One step's inputs for a with-past export: `feed` new tokens after `pos`
/// cached ones.
pub fn step_inputs(feed: &[i64], pos: usize, past: &[(String, Literal)]) -> Vec<(String, Literal)> {
    let t = feed.len();
    let mut v = vec![
        ("input_ids".to_string(), Literal::new(vec![1, t], LiteralData::I64(feed.to_vec())).unwrap()),
        ("attention_mask".to_string(), Literal::new(vec![1, pos + t], LiteralData::I64(vec![1; pos + t])).unwrap()),
        (
            "position_ids".to_string(),
            Literal::new(vec![1, t], LiteralData::I64((pos as i64..(pos + t) as i64).collect())).unwrap(),
        ),
    ];
    v.extend(past.iter().cloned());
    v
}

pub fn empty_past(g: &specc_ir::Graph) -> Vec<(String, Literal)> {
    g.params()
        .iter()
        .map(|&p| g.node(p))
        .filter(|n| n.name.starts_with("past_key_values."))
        .map(|n| {
            let d: Vec<usize> = n.ty.shape.0.iter().map(|d| d.fixed().unwrap_or(0)).collect();
            (n.name.clone(), Literal::new(vec![1, d[1], 0, d[3]], LiteralData::F32(vec![])).unwrap())
        })
        .collect()
}

/// Greedy decoding with a growing cache; every step's graph is specialized
/// to its shapes and then passed through `transform` (bf16, say).
pub fn greedy_decode(
    m: &specc_onnx::Model,
    prompt: &[i64],
    steps: usize,
    transform: &dyn Fn(&specc_ir::Graph, &specc_ir::WeightStore) -> (specc_ir::Graph, specc_ir::WeightStore),
) -> Vec<i64> {
    greedy_loop(m, prompt, steps, &mut |named| {
        let shapes: Vec<(&str, &[usize])> = named.iter().map(|(n, l)| (*n, l.shape.as_slice())).collect();
        let b = specc_opt::Bindings::from_shapes(&m.graph, &shapes).unwrap();
        let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap();
        let (g, w) = transform(&g, &m.weights);
        specc_interp::Session::<specc_interp::Cpu>::new(g, &w, specc_interp::cpu_device())
            .unwrap()
            .run_named(named)
            .unwrap()
    })
}

/// Greedy decoding on the graph as imported (symbolic shapes).
pub fn greedy_decode_as_imported(m: &specc_onnx::Model, prompt: &[i64], steps: usize) -> Vec<i64> {
    let s = specc_interp::Session::<specc_interp::Cpu>::new(m.graph.clone(), &m.weights, specc_interp::cpu_device())
        .unwrap();
    greedy_loop(m, prompt, steps, &mut |named| s.run_named(named).unwrap())
}

fn greedy_loop(
    m: &specc_onnx::Model,
    prompt: &[i64],
    steps: usize,
    run: &mut dyn FnMut(&[(&str, &Literal)]) -> Vec<(String, Literal)>,
) -> Vec<i64> {
    let mut tokens = Vec::new();
    let mut feed = prompt.to_vec();
    let mut past = empty_past(&m.graph);
    let mut pos = 0;
    while tokens.len() < steps {
        let inputs = step_inputs(&feed, pos, &past);
        let named: Vec<(&str, &Literal)> = inputs.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let out = run(&named);
        let logits = &out.iter().find(|(n, _)| n == "logits").unwrap().1;
        let next = *argmax_last(logits).last().unwrap();
        tokens.push(next);
        past = out
            .into_iter()
            .filter(|(n, _)| n.starts_with("present."))
            .map(|(n, l)| (n.replacen("present.", "past_key_values.", 1), l))
            .collect();
        pos += feed.len();
        feed = vec![next];
    }
    tokens
}

/// The target with its output projection negated: its proposals are the
/// target's least likely tokens, so it never agrees.
pub fn contrarian(target: &std::path::Path) -> specc_spec::DecoderModel {
    use specc_ir::{Op, WeightBytes, WeightStore};
    let m = specc_onnx::import_file(target).unwrap();
    let g = &m.graph;
    let mut id = g.output_by_name("logits").unwrap().node;
    while !matches!(g.node(id).op, Op::Dot { .. }) {
        id = g.node(id).operands[0];
    }
    let head = g
        .node(id)
        .operands
        .iter()
        .find(|&&o| matches!(g.node(o).op, Op::Weight { .. }))
        .copied()
        .expect("lm_head weight");
    let name = g.node(head).name.clone();
    let mut store = WeightStore::new();
    for n in m.weights.names().map(String::from).collect::<Vec<_>>() {
        let e = m.weights.get(&n).unwrap();
        let bytes = if n == name {
            let raw = e.bytes.read().unwrap();
            let neg: Vec<u8> =
                raw.chunks_exact(4).flat_map(|c| (-f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes()).collect();
            WeightBytes::Owned(std::sync::Arc::new(neg))
        } else {
            e.bytes.clone()
        };
        store.insert(n, e.ty.clone(), bytes).unwrap();
    }
    specc_spec::DecoderModel::new("draft", m.graph, store).unwrap()
}

pub fn decoder(role: &str, path: &std::path::Path) -> specc_spec::DecoderModel {
    let m = specc_onnx::import_file(path).unwrap();
    specc_spec::DecoderModel::new(role, m.graph, m.weights).unwrap()
}

/// A fixture's decode step (one token after its reference past), specialized.
pub fn decode_step(arch: &str) -> specc_ir::Graph {
    let dir = fixture(arch);
    let m = specc_onnx::import_file(&dir.join("with_past/model.onnx")).unwrap();
    let ins = read(&dir.join("reference/decode.in.safetensors"));
    let inputs: Vec<specc_ir::Literal> = m
        .graph
        .params()
        .iter()
        .map(|&p| ins.iter().find(|(n, _)| *n == m.graph.node(p).name).unwrap().1.clone())
        .collect();
    specialize_for(&m, &inputs).unwrap()
}

/// Rank `r`'s block of `l` along `axis` cut into `blocks` blocks (each
/// shared by `tp / blocks` consecutive ranks).
pub fn block(l: &Literal, axis: usize, r: usize, tp: usize, blocks: usize) -> Literal {
    let bytes = l.to_le_bytes();
    let esz = bytes.len() / l.num_elements().max(1);
    let d = &l.shape;
    let outer: usize = d[..axis].iter().product();
    let inner: usize = d[axis + 1..].iter().product::<usize>() * esz;
    let b = d[axis] / blocks;
    let index = r / (tp / blocks);
    let mut out = Vec::new();
    for o in 0..outer {
        let start = (o * d[axis] + index * b) * inner;
        out.extend_from_slice(&bytes[start..start + b * inner]);
    }
    let mut shape = d.clone();
    shape[axis] = b;
    Literal::from_le_bytes(l.dtype(), shape, &out).unwrap()
}
