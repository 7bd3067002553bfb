//! Tensor parallelism end to end: artifacts compiled with `--tp N` (one
//! program per graph, each rank with its own weight blocks) generate
//! exactly what the unsharded artifact generates, on the reference backend
//! (N interpreter ranks meeting at every all-reduce) and on N XLA CPU
//! devices through PJRT (one executable, per-device buffers). The oracles:
//! the tp 1 artifact (itself proven against onnxruntime and the target-only
//! decode elsewhere) and, for the fixture architectures, the unmodified
//! export decoded greedily by the interpreter.
//!
//! The PJRT half needs the CPU plugin (tools/setup-ci-venv.sh); without it
//! that test fails and says how to install it.

mod common;
use common::*;
use specc_artifact::{Artifact, Weights};
use specc_driver::compile::{CompileOptions, DraftPlacement, GenerationSources, compile_models};
use specc_exec::pjrt::{ExecutableCache, PjrtOptions, PluginChoice};
use specc_exec::{Backend, Engine, GenerateOptions, Generation, Mode, Pjrt, Reference, Sampling};
use specc_hlo::Target;
use specc_spec::{DecoderModel, SpecConfig};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-tp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[allow(clippy::too_many_arguments)]
fn compile(
    name: &str,
    target: &DecoderModel,
    draft: Option<&DecoderModel>,
    tp: usize,
    draft_placement: DraftPlacement,
    spec: &SpecConfig,
    eos: Vec<i64>,
) -> Artifact {
    let out = tmp(&format!("{name}-tp{tp}-{draft_placement:?}"));
    let sources = GenerationSources { target: name.into(), eos_token_ids: eos, tokenizer: None, inputs: None };
    let o = CompileOptions { target: Target::Trn1, tp, draft_placement, ..Default::default() };
    compile_models(target, draft.map(|d| (d, "draft")), &sources, &out, &o, spec)
        .unwrap_or_else(|e| panic!("{name} at tp {tp}: {e}"));
    Artifact::open(&out).unwrap()
}

fn pair_models() -> (DecoderModel, DecoderModel) {
    (
        decoder("target", &repo().join("graphs/pair/target/with_past/model.onnx")),
        decoder("draft", &repo().join("graphs/pair/draft/with_past/model.onnx")),
    )
}

fn pair_spec() -> SpecConfig {
    SpecConfig { ks: (1..=4).collect(), capacity: 160, buckets: vec![16, 64] }
}

fn json_prompt() -> Vec<i64> {
    // `{"user": {"id": 17, "name": "` in the pair's byte-level BPE.
    vec![91, 34, 117, 115, 101, 114, 34, 58, 32, 123, 34, 105, 100, 34, 58, 32, 49, 55]
}

const SAMPLED: Sampling = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 99 };

fn case(mode: Mode, k: Option<usize>, adaptive: bool, sampling: Option<Sampling>) -> GenerateOptions {
    GenerateOptions { ignore_eos: true, k, adaptive, sampling, ..GenerateOptions::greedy(32, mode) }
}

/// Every mode of the loop, greedy and sampled.
fn cases() -> Vec<(String, GenerateOptions)> {
    let mut v = Vec::new();
    for sampling in [None, Some(SAMPLED)] {
        let tag = if sampling.is_some() { "sampled" } else { "greedy" };
        v.push((format!("plain {tag}"), case(Mode::Plain, None, false, sampling)));
        for k in [1, 3, 4] {
            v.push((format!("draft k={k} {tag}"), case(Mode::Draft, Some(k), false, sampling)));
        }
        v.push((
            format!("prompt lookup k=4 {tag}"),
            case(Mode::PromptLookup { max_ngram: 3 }, Some(4), false, sampling),
        ));
        v.push((format!("draft adaptive {tag}"), case(Mode::Draft, Some(4), true, sampling)));
    }
    v
}

fn same(what: &str, got: &Generation, want: &Generation) {
    assert_eq!(got.tokens, want.tokens, "{what}: tokens");
    assert_eq!(got.stop, want.stop, "{what}: stop reason");
    assert_eq!(got.metrics.num_drafts, want.metrics.num_drafts, "{what}: rounds");
    assert_eq!(got.metrics.num_draft_tokens, want.metrics.num_draft_tokens, "{what}: drafted tokens");
    assert_eq!(got.metrics.num_accepted_tokens, want.metrics.num_accepted_tokens, "{what}: accepted tokens");
    assert_eq!(got.metrics.accepted_per_position, want.metrics.accepted_per_position, "{what}: per position");
}

/// Runs every case on `e` and compares with the unsharded reference run
/// `want` (the adaptive policy is handed the unsharded run's graph costs,
/// so it must choose the same K round by round).
fn check_engine<B: Backend>(
    what: &str,
    e: &mut Engine<B>,
    costs: &std::collections::HashMap<String, f64>,
    want: &[Generation],
    cases: &[(String, GenerateOptions)],
) {
    for ((name, o), want) in cases.iter().zip(want) {
        if o.adaptive {
            e.set_graph_costs(costs.clone());
        }
        let got = e.generate(&json_prompt(), o, &mut |_| {}).unwrap_or_else(|err| panic!("{what} {name}: {err}"));
        eprintln!(
            "{what} {name}: {} tokens, {} rounds, {} accepted",
            got.tokens.len(),
            got.metrics.num_drafts,
            got.metrics.num_accepted_tokens
        );
        same(&format!("{what} {name}"), &got, want);
    }
}

/// The unsharded artifact's generations in every case, and the graph costs
/// its adaptive runs measured.
fn unsharded_runs(
    a: &Artifact,
    cases: &[(String, GenerateOptions)],
) -> (Vec<Generation>, std::collections::HashMap<String, f64>) {
    let mut e = Engine::load(a, Reference::default()).unwrap();
    let want: Vec<Generation> =
        cases.iter().map(|(_, o)| e.generate(&json_prompt(), o, &mut |_| {}).unwrap()).collect();
    let accepted: u64 = want.iter().map(|g| g.metrics.num_accepted_tokens).sum();
    assert!(accepted > 0, "no proposal was accepted in any case: the comparison proves nothing");
    (want, e.graph_costs().clone())
}

/// The bundled pair at tp 2 and 4 (draft sharded like the target), tp 2
/// with the draft replicated, and tp 8 (twice the target's 4 KV heads:
/// each KV block shared by two ranks) with the draft replicated (its 4
/// query heads do not divide among 8 ranks): on N interpreter ranks, the
/// same tokens, rounds and acceptance as tp 1 in every mode.
#[test]
fn the_pair_generates_the_unsharded_tokens_at_every_tp_on_interpreter_ranks() {
    let (target, draft) = pair_models();
    let spec = pair_spec();
    let cases = cases();
    let a1 = compile("pair", &target, Some(&draft), 1, DraftPlacement::Sharded, &spec, vec![]);
    let (want, costs) = unsharded_runs(&a1, &cases);
    for (tp, placement) in [
        (2, DraftPlacement::Sharded),
        (4, DraftPlacement::Sharded),
        (2, DraftPlacement::Replicated),
        (8, DraftPlacement::Replicated),
    ] {
        let a = compile("pair", &target, Some(&draft), tp, placement, &spec, vec![]);
        let mut e = Engine::load(&a, Reference::default()).unwrap();
        assert_eq!(e.backend().ranks(), tp);
        check_engine(&format!("reference tp {tp} draft {placement:?}"), &mut e, &costs, &want, &cases);
    }
}

fn plugin() -> PathBuf {
    match specc_exec::pjrt::find_plugin_in(None, &[repo().join(".venv-ci")]) {
        Ok((p, _)) => p,
        Err(e) => panic!(
            "\n\n*** the PJRT plugin is not installed, so tensor parallelism on XLA devices cannot be tested ***\n{e}\nrun tools/setup-ci-venv.sh\n"
        ),
    }
}

/// The same on N XLA CPU devices: one executable per graph run on every
/// device with per-device weights, caches and rank.
#[test]
fn the_pair_generates_the_unsharded_tokens_on_xla_devices() {
    let plugin = plugin();
    let (target, draft) = pair_models();
    let spec = pair_spec();
    let cases: Vec<(String, GenerateOptions)> = cases()
        .into_iter()
        .filter(|(n, _)| n.starts_with("plain") || n.starts_with("draft k=3") || n.starts_with("prompt lookup"))
        .collect();
    let a1 = compile("pair-xla", &target, Some(&draft), 1, DraftPlacement::Sharded, &spec, vec![]);
    let (want, costs) = unsharded_runs(&a1, &cases);
    let cache = ExecutableCache::Dir(tmp("pjrt-cache"));
    for tp in [2, 4] {
        let a = compile("pair-xla", &target, Some(&draft), tp, DraftPlacement::Sharded, &spec, vec![]);
        let options =
            PjrtOptions { plugin: Some(PluginChoice::Path(plugin.clone())), cache: cache.clone(), devices: 1 };
        let mut e = Engine::load(&a, Pjrt::new(options)).unwrap();
        assert_eq!(e.backend().devices(), tp, "one device per rank");
        check_engine(&format!("pjrt tp {tp}"), &mut e, &costs, &want, &cases);
    }
}

/// Every fixture architecture (gpt2's fused QKV among them), at tp 2 and at
/// tp 4 (twice their 2 KV heads), on interpreter ranks and on N XLA CPU
/// devices: plain decoding gives the unmodified export's greedy tokens, and
/// speculation with the target as its own draft (every proposal accepted)
/// and with a contrarian draft (every proposal rejected), both sharded like
/// the target, gives them too.
#[test]
fn every_fixture_architecture_decodes_the_exports_tokens_at_tp_2_and_4() {
    const NEW: usize = 40;
    let plugin = plugin();
    let cache = ExecutableCache::Dir(tmp("fixture-pjrt-cache"));
    for arch in ARCHS {
        let path = fixture(arch).join("with_past/model.onnx");
        let target = decoder("target", &path);
        let prompt = greedy_prompt(arch);
        let m = specc_onnx::import_file(&path).unwrap();
        let want = greedy_decode_as_imported(&m, &prompt, NEW);
        let spec = SpecConfig { ks: vec![3], capacity: 96, buckets: vec![16, 32] };
        for (draft_name, draft) in [("self", decoder("draft", &path)), ("contrarian", contrarian(&path))] {
            for tp in [2, 4] {
                let a = compile(
                    &format!("{arch}-{draft_name}"),
                    &target,
                    Some(&draft),
                    tp,
                    DraftPlacement::Sharded,
                    &spec,
                    vec![1],
                );
                let check = |backend: &str, got: Generation, mode: Mode| {
                    let what = format!("{arch} tp {tp} {mode:?} draft {draft_name} on {backend}");
                    assert_eq!(got.tokens, want, "{what}");
                    if mode == Mode::Draft {
                        let (accepted, drafted) = (got.metrics.num_accepted_tokens, got.metrics.num_draft_tokens);
                        eprintln!("{what}: {accepted} of {drafted} proposals accepted");
                        match draft_name {
                            "self" => assert_eq!(accepted, drafted, "{what}: the target as its own draft"),
                            _ => assert_eq!(accepted, 0, "{what}: a draft that never agrees"),
                        }
                    }
                };
                let greedy = |mode| GenerateOptions { ignore_eos: true, ..GenerateOptions::greedy(NEW, mode) };
                let mut e = Engine::load(&a, Reference::default()).unwrap();
                for mode in [Mode::Plain, Mode::Draft, Mode::PromptLookup { max_ngram: 3 }] {
                    check("interpreter ranks", e.generate(&prompt, &greedy(mode), &mut |_| {}).unwrap(), mode);
                }
                // The same whole generations on N XLA CPU devices.
                let options =
                    PjrtOptions { plugin: Some(PluginChoice::Path(plugin.clone())), cache: cache.clone(), devices: 1 };
                let mut e = Engine::load(&a, Pjrt::new(options)).unwrap();
                for mode in [Mode::Plain, Mode::Draft] {
                    check("XLA CPU devices", e.generate(&prompt, &greedy(mode), &mut |_| {}).unwrap(), mode);
                }
            }
        }
    }
}

/// The manifest records tp, the collective group and the shards; each rank
/// file holds exactly its blocks, at the local shapes the rank program
/// declares; every graph's HLO has as many all-reduces over one group of
/// every rank as its entry records.
#[test]
fn the_manifest_records_tp_the_group_and_each_ranks_blocks() {
    let (target, draft) = pair_models();
    let spec = SpecConfig { ks: vec![2], capacity: 64, buckets: vec![16] };
    let a = compile("pair-manifest", &target, Some(&draft), 2, DraftPlacement::Replicated, &spec, vec![]);
    let m = &a.manifest;
    assert_eq!(m.tp, 2);
    assert_eq!(m.replica_groups, vec![vec![0, 1]]);
    let t = m.model("target").unwrap();
    let Weights::Sharded { ranks, .. } = &t.weights else {
        panic!("the target's weights are not sharded: {:?}", t.weights)
    };
    assert_eq!(ranks.len(), 2);
    assert!(!matches!(m.model("draft").unwrap().weights, Weights::Sharded { .. }), "a replicated draft is whole");
    let whole = target.weights.clone();
    let (r0, r1) = (a.rank_weights("target", 0).unwrap(), a.rank_weights("target", 1).unwrap());
    let mut split = 0;
    for name in whole.names() {
        let full = whole.get(name).unwrap();
        let (b0, b1) = (r0.get(name).unwrap(), r1.get(name).unwrap());
        let (d0, d1) = (b0.bytes.read().unwrap(), b1.bytes.read().unwrap());
        let full_bytes = full.bytes.read().unwrap();
        if b0.ty == full.ty {
            assert_eq!(*d0, *full_bytes, "`{name}` is replicated: rank 0 holds it whole");
            assert_eq!(*d1, *full_bytes, "`{name}` is replicated: rank 1 holds it whole");
            continue;
        }
        split += 1;
        // A split weight: the two blocks are halves of one axis, and
        // together they are the weight.
        let fs = full.ty.shape.as_fixed().unwrap();
        let ls = b0.ty.shape.as_fixed().unwrap();
        let axis = (0..fs.len()).find(|&i| fs[i] != ls[i]).unwrap();
        assert_eq!(ls[axis] * 2, fs[axis], "`{name}`: {:?} of {:?}", ls, fs);
        let lit = |ty: &specc_ir::TensorType, b: &[u8]| {
            specc_ir::Literal::from_le_bytes(ty.dtype, ty.shape.as_fixed().unwrap(), b).unwrap()
        };
        let f = lit(&full.ty, &full_bytes);
        assert_eq!(block(&f, axis, 0, 2, 2).to_le_bytes(), *d0, "`{name}` rank 0");
        assert_eq!(block(&f, axis, 1, 2, 2).to_le_bytes(), *d1, "`{name}` rank 1");
    }
    // 5 layers of q, k, v, gate, up (columns), o, down (rows), and lm_head.
    assert_eq!(split, 5 * 7 + 1, "split weights of the target");
    for g in &m.graphs {
        let text = String::from_utf8(a.read(&g.hlo_txt).unwrap()).unwrap();
        let reduces: Vec<&str> = text.lines().filter(|l| l.contains(" all-reduce(")).collect();
        assert_eq!(reduces.len(), g.all_reduces, "graph `{}`: all-reduces in its HLO", g.name);
        for l in &reduces {
            assert!(l.contains("replica_groups={{0,1}}"), "graph `{}`: {l}", g.name);
            assert!(l.contains(" f32[") || l.contains("= f32[") || l.contains("bf16["), "a float all-reduce: {l}");
        }
        let expect = match (g.model.as_str(), g.kind.as_str()) {
            // The draft is replicated: its graphs have no collective.
            ("draft", _) => 0,
            _ => 1,
        };
        if expect == 0 {
            assert_eq!(g.all_reduces, 0, "graph `{}` of the replicated draft", g.name);
        } else {
            assert!(g.all_reduces >= 2 * 5, "graph `{}`: {} all-reduces", g.name, g.all_reduces);
        }
    }
}

/// What `--tp` refuses, on the command line, with the reason.
#[test]
fn tp_refusals_name_the_reason() {
    let t = repo().join("graphs/pair/target/with_past/model.onnx");
    let d = repo().join("graphs/pair/draft/with_past/model.onnx");
    let out = tmp("refused");
    let base = ["compile", s(&t), "--max-seq-len", "64", "--prompt-buckets", "16", "-o", s(&out)];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        let (ok, _, err) = specc(&args);
        assert!(!ok, "{extra:?} was accepted");
        assert!(!out.exists(), "{extra:?}: a refused compile wrote {}", out.display());
        err
    };
    let e = run(&["--tp", "3"]);
    assert!(e.contains("--tp 3 is not one of [1, 2, 4, 8, 16, 32, 64]"), "{e}");
    let e = run(&["--tp", "2", "--weights", "link"]);
    assert!(e.contains("--weights link cannot be combined with --tp 2"), "{e}");
    // The target has 8 query heads.
    let e = run(&["--tp", "16"]);
    assert!(e.contains("8 heads, which 16 ranks do not share evenly"), "{e}");
    assert!(e.contains("o_proj/MatMul"), "the node is named: {e}");
    // The draft has 4: it can still run whole on every rank.
    let e = run(&["--tp", "8", "--draft", s(&d)]);
    assert!(e.contains("model `draft` at --tp 8") && e.contains("--draft-placement replicated"), "{e}");
    let e = run(&["--tp", "2", "--draft-placement", "halved"]);
    assert!(e.contains("--draft-placement `halved`"), "{e}");
    let (ok, _, e) = specc(&["compile", s(&t), "--tp", "2", "-o", s(&out)]);
    assert!(!ok && e.contains("--tp 2 needs generation graphs"), "{e}");
}

/// A tensor-parallel manifest that does not hang together is refused on
/// open, by name: ranks that are not the artifact's tp, a collective group
/// that is not every rank, all-reduces in a one-rank artifact; a rank file
/// that is not what was written fails its checksum.
#[test]
fn inconsistent_tensor_parallel_artifacts_are_refused() {
    let (target, _) = pair_models();
    let spec = SpecConfig { ks: vec![2], capacity: 64, buckets: vec![16] };
    let a = compile("pair-edit", &target, None, 2, DraftPlacement::Sharded, &spec, vec![]);
    let dir = a.dir.clone();
    let original = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| -> String {
        let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
        edit(&mut m);
        std::fs::write(dir.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
        let e = Artifact::open(&dir).err().map(|e| e.to_string()).unwrap_or_else(|| "opened".into());
        std::fs::write(dir.join("manifest.json"), &original).unwrap();
        e
    };
    let e = edited(&|m| m["tp"] = 4.into());
    assert!(e.contains("weights for 2 ranks, the artifact runs 4"), "{e}");
    let e = edited(&|m| m["replica_groups"] = serde_json::json!([[0], [1]]));
    assert!(e.contains("not the one group of all 2 ranks"), "{e}");
    let e = edited(&|m| m["tp"] = 200.into());
    assert!(e.contains("not in 1..=128") || e.contains("weights for 2 ranks"), "{e}");
    let e = edited(&|m| {
        m.as_object_mut().unwrap().remove("tp");
        m.as_object_mut().unwrap().remove("replica_groups");
        let w = m["models"][0]["weights"]["replicated"].clone();
        m["models"][0]["weights"] = w;
    });
    assert!(e.contains("all-reduces but the artifact runs on one rank"), "{e}");
    // A rank's file replaced by the other rank's: same size, wrong bytes.
    let (r0, r1) = (dir.join("weights/target.rank0.safetensors"), dir.join("weights/target.rank1.safetensors"));
    std::fs::copy(&r1, &r0).unwrap();
    let e = Artifact::open(&dir).and_then(|a| a.rank_weights("target", 0).map(|_| ())).err().unwrap().to_string();
    assert!(e.contains("target.rank0.safetensors"), "{e}");
}
