//! The PJRT backend on XLA's CPU plugin (the `xla-cpu-pjrt` wheel that
//! tools/setup-ci-venv.sh installs into .venv-ci): the whole generation
//! loop gives exactly the reference backend's tokens and acceptance, the
//! KV caches update in place, compiled executables are cached on disk, bf16
//! logits stay within a bf16 tolerance of the interpreter's emulation, and
//! bad plugins and artifacts get typed errors.
//!
//! The plugin is required: without it every test here fails, loudly.
//! `SPECC_PJRT_PLUGIN` (cpu, cuda or a path) runs them on another plugin
//! (tools/gpu_check.sh does, with cuda).

mod common;
use common::*;
use specc_artifact::Artifact;
use specc_driver::compile::{CompileOptions, GenerationSources, compile_models};
use specc_exec::pjrt::{
    Client, ExecutableCache, PjrtBackendError, PjrtError, PjrtOptions, Plugin, PluginChoice, element_type,
};
use specc_exec::{Backend, BackendError, Engine, GenerateOptions, Generation, Mode, Pjrt, Reference, Sampling};
use specc_hlo::Target;
use specc_ir::{DType, Literal};
use specc_spec::SpecConfig;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The plugin under test: `$SPECC_PJRT_PLUGIN`, else the CPU plugin of
/// .venv-ci; a failure that says how to get it when there is none.
fn plugin() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let venv = repo().join(".venv-ci");
        match specc_exec::pjrt::find_plugin_in(None, &[venv]) {
            Ok((p, how)) => {
                eprintln!("PJRT plugin: {} ({how})", p.display());
                p
            }
            Err(e) => panic!(
                "\n\n*** the PJRT plugin is not installed, so the PJRT backend cannot be tested ***\n{e}\nrun tools/setup-ci-venv.sh\n"
            ),
        }
    })
    .clone()
}

/// One executable cache for the whole test process, so only the first
/// load compiles (the cache test uses its own).
fn shared_cache() -> ExecutableCache {
    ExecutableCache::Dir(std::env::temp_dir().join(format!("specc-pjrt-{}-cache", std::process::id())))
}

fn options(cache: ExecutableCache) -> PjrtOptions {
    PjrtOptions { plugin: Some(PluginChoice::Path(plugin())), cache, devices: 1 }
}

/// The bundled pair compiled once per dtype for every test of this file.
fn compile_pair(dtype: DType) -> Artifact {
    let out = std::env::temp_dir().join(format!("specc-pjrt-{}-pair-{}", std::process::id(), dtype.name()));
    let _ = std::fs::remove_dir_all(&out);
    let target = decoder("target", &repo().join("graphs/pair/target/with_past/model.onnx"));
    let draft = decoder("draft", &repo().join("graphs/pair/draft/with_past/model.onnx"));
    let spec = SpecConfig { ks: (1..=6).collect(), capacity: 160, buckets: vec![16, 64] };
    let sources = GenerationSources { target: "pair".into(), eos_token_ids: vec![], tokenizer: None, inputs: None };
    compile_models(
        &target,
        Some((&draft, "draft")),
        &sources,
        &out,
        &CompileOptions { target: Target::Trn1, dtype, ..Default::default() },
        &spec,
    )
    .unwrap();
    Artifact::open(&out).unwrap()
}

fn pair() -> &'static Artifact {
    static A: OnceLock<Artifact> = OnceLock::new();
    A.get_or_init(|| compile_pair(DType::F32))
}

fn prompt() -> Vec<i64> {
    // `{"user": {"id": 17, "name": "` in the pair's byte-level BPE: JSON,
    // where the draft and prompt lookup both find work.
    vec![91, 34, 117, 115, 101, 114, 34, 58, 32, 123, 34, 105, 100, 34, 58, 32, 49, 55]
}

fn run<B: Backend>(e: &mut Engine<B>, o: &GenerateOptions) -> Generation {
    e.generate(&prompt(), o, &mut |_| {}).unwrap()
}

const SAMPLED: Sampling = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 1234 };

fn case(mode: Mode, k: Option<usize>, adaptive: bool, sampling: Option<Sampling>) -> GenerateOptions {
    GenerateOptions { ignore_eos: true, k, adaptive, sampling, ..GenerateOptions::greedy(32, mode) }
}

/// Every decoding mode of the loop, greedy and sampled: the same tokens,
/// and (where K is fixed) the same acceptance, round by round.
#[test]
fn generation_matches_the_reference_in_every_mode() {
    let a = pair();
    let mut r = Engine::load(a, Reference::default()).unwrap();
    let mut p = Engine::load(a, Pjrt::new(options(shared_cache()))).unwrap();
    eprintln!("{}", p.backend().description());
    let mut cases = Vec::new();
    for sampling in [None, Some(SAMPLED)] {
        cases.push(("plain".to_string(), case(Mode::Plain, None, false, sampling)));
        for k in 1..=6 {
            cases.push((format!("draft k={k}"), case(Mode::Draft, Some(k), false, sampling)));
        }
        cases.push(("prompt lookup k=4".into(), case(Mode::PromptLookup { max_ngram: 3 }, Some(4), false, sampling)));
        cases.push(("draft adaptive".into(), case(Mode::Draft, Some(6), true, sampling)));
    }
    let mut drafted = 0;
    for (name, o) in &cases {
        let name = format!("{name} {}", if o.sampling.is_some() { "sampled" } else { "greedy" });
        let want = run(&mut r, o);
        // The adaptive policy weighs acceptance against measured graph
        // costs; given the reference's measurements it must choose the same
        // K round by round, and so give the same tokens and acceptance.
        if o.adaptive {
            p.set_graph_costs(r.graph_costs().clone());
        }
        let got = run(&mut p, o);
        eprintln!(
            "{name}: {} tokens, {} rounds, {} accepted (reference {} rounds, {} accepted)",
            got.tokens.len(),
            got.metrics.num_drafts,
            got.metrics.num_accepted_tokens,
            want.metrics.num_drafts,
            want.metrics.num_accepted_tokens
        );
        assert_eq!(got.tokens, want.tokens, "{name}: tokens");
        assert_eq!(got.stop, want.stop, "{name}: stop reason");
        assert_eq!(got.metrics.num_drafts, want.metrics.num_drafts, "{name}: rounds");
        assert_eq!(got.metrics.num_draft_tokens, want.metrics.num_draft_tokens, "{name}: drafted tokens");
        assert_eq!(got.metrics.num_accepted_tokens, want.metrics.num_accepted_tokens, "{name}: accepted tokens");
        assert_eq!(
            got.metrics.accepted_per_position, want.metrics.accepted_per_position,
            "{name}: accepted per position"
        );
        drafted += got.metrics.num_accepted_tokens;
    }
    // A comparison of acceptance is only worth something if proposals were
    // accepted at all.
    assert!(drafted > 0, "no proposal was accepted in any case: the comparison proves nothing");
}

/// The KV caches are device buffers donated to their aliased outputs: after
/// a whole speculative generation each cache is still the same memory, and
/// only per-call values crossed to the device after load.
#[test]
fn kv_caches_update_in_place_and_only_per_call_values_cross() {
    let a = pair();
    let mut p = Engine::load(a, Pjrt::new(options(shared_cache()))).unwrap();
    let names: Vec<String> = a
        .manifest
        .graphs
        .iter()
        .flat_map(|g| g.outputs.iter().filter_map(|o| o.aliases_parameter.map(|i| g.parameters[i].name.clone())))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(!names.is_empty(), "the artifact has no KV-cache state");
    let before: Vec<usize> = names.iter().map(|n| p.backend().state_address(n).unwrap()).collect();
    let loaded = p.backend().stats().clone();
    let g = run(&mut p, &case(Mode::Draft, Some(4), false, None));
    let after: Vec<usize> = names.iter().map(|n| p.backend().state_address(n).unwrap()).collect();
    assert_eq!(after, before, "a donated KV cache moved: the round copied it instead of updating it in place");
    let s = p.backend().stats();
    let calls = s.executions - loaded.executions;
    let per_call = (s.bytes_to_device - loaded.bytes_to_device) as f64 / calls as f64;
    let back = (s.bytes_to_host - loaded.bytes_to_host) as f64 / calls as f64;
    eprintln!(
        "{} caches ({} bytes) stayed in place over {calls} calls ({} tokens); per call {per_call:.0} bytes to the device, {back:.0} back; weights {} bytes uploaded once",
        names.len(),
        s.state_bytes,
        g.tokens.len(),
        s.weight_bytes
    );
    // Tokens, positions, seeds and counts: a few hundred bytes, where one
    // cache alone is tens of kilobytes.
    assert!(per_call < 1024.0, "{per_call} bytes per call crossed to the device");
    assert!(back < 1024.0, "{back} bytes per call came back");
}

/// A second load finds every executable in the on-disk cache, and what it
/// loads runs the same.
#[test]
fn compiled_executables_are_cached_on_disk() {
    let a = pair();
    let dir = std::env::temp_dir().join(format!("specc-pjrt-{}-own-cache", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let load = || {
        let mut e = Engine::load(a, Pjrt::new(options(ExecutableCache::Dir(dir.clone())))).unwrap();
        e.prepare_all().unwrap();
        let s = e.backend().stats().clone();
        (e, s)
    };
    let (mut first, cold) = load();
    let (mut second, warm) = load();
    eprintln!(
        "all {} graphs: load {:.2} s + {:.2} s compiling; again: load {:.2} s + {:.2} s from the cache",
        cold.graphs, cold.load_seconds, cold.prepare_seconds, warm.load_seconds, warm.prepare_seconds
    );
    assert_eq!((cold.compiled, cold.from_cache), (cold.graphs, 0));
    assert_eq!((warm.compiled, warm.from_cache), (0, warm.graphs));
    let o = case(Mode::Draft, Some(3), false, None);
    assert_eq!(run(&mut second, &o).tokens, run(&mut first, &o).tokens);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fixture's bf16 specialization (bf16 weights and weight matmuls, f32
/// accumulation), teacher-forced on its f32 greedy tokens: at every step
/// XLA's logits are within a bf16 tolerance of the interpreter's bf16
/// emulation (bits may differ: XLA may fuse and reorder f32 sums). The
/// argmax agreement is reported.
#[test]
fn bf16_logits_stay_within_tolerance_of_the_interpreter_teacher_forced() {
    let plugin = Plugin::open(&plugin()).unwrap();
    let client = Client::create(&plugin, &cpu_options(&plugin)).unwrap();
    for arch in ARCHS {
        let dir = fixture(arch);
        let m = specc_onnx::import_file(&dir.join("with_past/model.onnx")).unwrap();
        let prompt = greedy_prompt(arch);
        let forced = greedy_reference(arch);
        let steps = 8.min(forced.len());
        let (mut past_x, mut past_i) = (empty_past(&m.graph), empty_past(&m.graph));
        let (mut feed, mut pos) = (prompt.clone(), 0);
        let (mut worst, mut agree) = (0.0f64, 0);
        for step in 0..steps {
            let run_side = |past: &[(String, Literal)], xla: bool| {
                let inputs = step_inputs(&feed, pos, past);
                let named: Vec<(&str, &Literal)> = inputs.iter().map(|(n, l)| (n.as_str(), l)).collect();
                let shapes: Vec<(&str, &[usize])> = named.iter().map(|(n, l)| (*n, l.shape.as_slice())).collect();
                let b = specc_opt::Bindings::from_shapes(&m.graph, &shapes).unwrap();
                let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap();
                let (g, w) = specc_opt::to_bf16(&g, &m.weights).unwrap();
                if xla {
                    run_on_client(&client, &g, &w, &named)
                } else {
                    specc_interp::Session::<specc_interp::Cpu>::new(g, &w, specc_interp::cpu_device())
                        .unwrap()
                        .run_named(&named)
                        .unwrap()
                }
            };
            let x = run_side(&past_x, true);
            let i = run_side(&past_i, false);
            let logits = |o: &[(String, Literal)]| o.iter().find(|(n, _)| n == "logits").unwrap().1.clone();
            let (lx, li) = (logits(&x), logits(&i));
            let (vx, vi) = (lx.to_f64_vec(), li.to_f64_vec());
            let scale = vi.iter().map(|v| v.abs()).fold(0.0, f64::max);
            let diff = vx.iter().zip(&vi).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            // bf16 has 8 significant bits: a relative 2^-8 of the largest
            // logit, with room for the sums XLA orders differently.
            assert!(
                diff <= 1e-2 * scale.max(1.0),
                "{arch} step {step}: XLA's bf16 logits differ from the interpreter's by {diff} (max |logit| {scale})"
            );
            worst = worst.max(diff / scale.max(1.0));
            agree += usize::from(argmax_last(&lx).last() == argmax_last(&li).last());
            past_x = presents(x);
            past_i = presents(i);
            pos += feed.len();
            feed = vec![forced[step]];
        }
        eprintln!(
            "{arch} bf16 on XLA vs the interpreter, teacher-forced: max |diff| / max |logit| = {worst:.2e}, argmax agrees at {agree}/{steps} steps"
        );
    }
}

/// The bundled pair compiled in bf16 on both backends: token agreement is
/// reported (not asserted: one rounding difference at a near-tie changes
/// the rest of the text, which the logits test above bounds).
#[test]
fn bf16_pair_token_agreement_is_reported() {
    let a = compile_pair(DType::BF16);
    let mut r = Engine::load(&a, Reference::default()).unwrap();
    let mut p = Engine::load(&a, Pjrt::new(options(shared_cache()))).unwrap();
    for (name, o) in
        [("plain", case(Mode::Plain, None, false, None)), ("draft k=3", case(Mode::Draft, Some(3), false, None))]
    {
        let (want, got) = (run(&mut r, &o), run(&mut p, &o));
        let prefix = got.tokens.iter().zip(&want.tokens).take_while(|(a, b)| a == b).count();
        let same = got.tokens.iter().zip(&want.tokens).filter(|(a, b)| a == b).count();
        eprintln!(
            "bf16 pair, {name}: XLA agrees with the interpreter's bf16 emulation on the first {prefix}/{} tokens, {same} overall",
            want.tokens.len()
        );
        assert_eq!(got.tokens.len(), want.tokens.len());
    }
}

#[test]
fn bad_plugins_are_refused_with_typed_errors() {
    let open = |p: &str| Plugin::open(std::path::Path::new(p)).err().expect("opened a bad plugin");
    let e = open("/nonexistent/xla_cpu_pjrt.so");
    assert!(matches!(e, PjrtError::Open { .. }), "{e}");
    // A shared library that is not a plugin (the libnrt double).
    let e = open(env!("SPECC_NRT_DOUBLE"));
    assert!(matches!(e, PjrtError::NotAPlugin { .. }) && e.to_string().contains("GetPjrtApi"), "{e}");
    let e = open(env!("SPECC_PJRT_FAKE_OLD"));
    assert!(matches!(e, PjrtError::TooOld { major: 0, minor: 50, .. }) && e.to_string().contains("0.50"), "{e}");
    let e = open(env!("SPECC_PJRT_FAKE_MAJOR"));
    assert!(matches!(e, PjrtError::OtherMajor { major: 1, .. }), "{e}");
    let e = open(env!("SPECC_PJRT_FAKE_SHORT"));
    assert!(matches!(e, PjrtError::ShortTable { .. }), "{e}");
    // A family whose wheel is in none of the environments searched.
    let empty = std::env::temp_dir().join(format!("specc-pjrt-{}-empty-site", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let e = specc_exec::pjrt::find_plugin_among(&PluginChoice::Cuda, "--pjrt-plugin", &[empty.clone()]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PjrtBackendError::NotFound { .. }), "{msg}");
    assert!(msg.contains("pip install jax-cuda12-pjrt") && msg.contains(&empty.display().to_string()), "{msg}");
    // Through the backend: the wrong path named in the error.
    let mut b = Pjrt::new(PjrtOptions {
        plugin: Some(PluginChoice::Path("/nonexistent/plugin.so".into())),
        cache: ExecutableCache::Off,
        devices: 1,
    });
    let e = b.load(pair()).err().expect("loaded with no plugin");
    assert!(matches!(&e, BackendError::Pjrt(_)) && e.to_string().contains("/nonexistent/plugin.so"), "{e}");
    for e in [open("/nonexistent/x.so"), open(env!("SPECC_PJRT_FAKE_OLD"))] {
        eprintln!("{e}");
    }
    eprintln!("{msg}");
}

#[test]
fn bad_programs_and_mismatched_artifacts_are_refused_with_typed_errors() {
    let plugin = Plugin::open(&plugin()).unwrap();
    let client = Client::create(&plugin, &cpu_options(&plugin)).unwrap();
    // Bytes that are no HloModuleProto: the plugin's own message, the call named.
    let e = client.compile(b"\x0a\x03not an HLO module", 1).err().expect("compiled garbage");
    assert!(matches!(&e, PjrtError::Call { call: "PJRT_Client_Compile", .. }), "{e}");
    eprintln!("{e}");
    // An artifact whose decode graph points at a verify graph's HLO
    // (checksums intact): the program's outputs are not the manifest's,
    // refused before it runs.
    let a = pair();
    let swap = |graph: &str, with: &str| {
        let mut manifest = a.manifest.clone();
        let other = manifest.graphs.iter().find(|g| g.name == with).unwrap().hlo_pb.clone();
        manifest.graphs.iter_mut().find(|g| g.name == graph).unwrap().hlo_pb = other;
        Artifact { dir: a.dir.clone(), manifest }
    };
    let mut b = Pjrt::new(options(ExecutableCache::Off));
    b.load(&swap("target_decode", "verify_k2")).unwrap();
    let e = b.prepare(&["target_decode".into()]).err().expect("prepared a graph whose HLO does not match its manifest");
    let msg = e.to_string();
    assert!(msg.contains("`target_decode`") && msg.contains("does not match its manifest"), "{msg}");
    eprintln!("{msg}");
    // Executing it is refused the same way, never run.
    let e = b.execute("target_decode", &[]).err().expect("ran a graph whose HLO does not match its manifest");
    assert!(e.to_string().contains("does not match its manifest"), "{e}");
    // The other graphs of the artifact are unaffected.
    b.prepare(&["target_prefill_16".into()]).unwrap();
    // Outputs alike, parameters not (the 16-token prefill given the
    // 64-token one's program): the plugin refuses the arguments.
    let mut b = Pjrt::new(options(ExecutableCache::Off));
    b.load(&swap("target_prefill_16", "target_prefill_64")).unwrap();
    let tokens = Literal::new(vec![1, 16], specc_ir::LiteralData::I32(vec![1; 16])).unwrap();
    let length = Literal::scalar_i32(3);
    let e = b
        .execute("target_prefill_16", &[("tokens", &tokens), ("length", &length)])
        .err()
        .expect("ran a prefill on another bucket's program");
    eprintln!("{e}");
    assert!(matches!(e, BackendError::Pjrt(_)), "{e}");
}

fn cpu_options(plugin: &Plugin) -> Vec<(&'static str, i64)> {
    let cpu = plugin.path().file_name().is_some_and(|n| n.to_string_lossy().contains("cpu"));
    if cpu { vec![("cpu_device_count", 1)] } else { vec![] }
}

/// Runs a static graph on one device of `client`: its HLO compiled, its
/// parameters then its weights uploaded, its outputs read back.
fn run_on_client(
    client: &Client,
    g: &specc_ir::Graph,
    w: &specc_ir::WeightStore,
    named: &[(&str, &Literal)],
) -> Vec<(String, Literal)> {
    let module = specc_hlo::lower(g, &[]).unwrap();
    let exe = client.compile(&specc_hlo::to_proto_bytes(&module), 1).unwrap();
    let mut buffers = Vec::new();
    for &p in g.params() {
        let n = g.node(p);
        let lit = named.iter().find(|(name, _)| *name == n.name).unwrap().1;
        let dims: Vec<i64> = lit.shape.iter().map(|&d| d as i64).collect();
        buffers.push(client.upload(&lit.to_le_bytes(), element_type(lit.dtype()), &dims, 0).unwrap());
    }
    for d in g.weights() {
        let bytes = w.get(&d.name).unwrap().bytes.read().unwrap();
        let dims: Vec<i64> = d.ty.shape.as_fixed().unwrap().iter().map(|&x| x as i64).collect();
        buffers.push(client.upload(&bytes, element_type(d.ty.dtype), &dims, 0).unwrap());
    }
    let args: Vec<&specc_exec::pjrt::Buffer> = buffers.iter().collect();
    let outs = exe.execute(&[args], &[], g.outputs().len()).unwrap();
    g.outputs()
        .iter()
        .zip(outs.into_iter().next().unwrap())
        .map(|(o, b)| {
            let ty = g.ty(o.node);
            let shape = ty.shape.as_fixed().unwrap();
            let bytes = b.download(ty.dtype.size_bytes() * shape.iter().product::<usize>()).unwrap();
            (o.name.clone(), Literal::from_le_bytes(ty.dtype, shape, &bytes).unwrap())
        })
        .collect()
}

fn presents(out: Vec<(String, Literal)>) -> Vec<(String, Literal)> {
    out.into_iter()
        .filter(|(n, _)| n.starts_with("present."))
        .map(|(n, l)| (n.replacen("present.", "past_key_values.", 1), l))
        .collect()
}

/// One executable on two devices of one client at once, each with its own
/// buffers (how tensor-parallel ranks run): every device computes its own
/// inputs' result, as the interpreter does.
#[test]
fn one_executable_runs_on_two_devices_with_per_device_buffers() {
    use specc_ir::{GraphBuilder, LiteralData, Op, TensorType};
    let plugin = Plugin::open(&plugin()).unwrap();
    let cpu = plugin.path().file_name().is_some_and(|n| n.to_string_lossy().contains("cpu"));
    let client = Client::create(&plugin, if cpu { &[("cpu_device_count", 2)] } else { &[] }).unwrap();
    assert!(client.device_count() >= 2, "the plugin offers {} device(s)", client.device_count());
    let mut b = GraphBuilder::new("two_devices");
    let x = b.parameter("x", TensorType::fixed(DType::F32, &[2, 3])).unwrap();
    let w = b.parameter("w", TensorType::fixed(DType::F32, &[3, 2])).unwrap();
    let d = specc_ir::DotDims { lhs_batch: vec![], rhs_batch: vec![], lhs_contract: vec![1], rhs_contract: vec![0] };
    let y = b.add("y", Op::Dot { dims: d }, &[x, w]).unwrap();
    b.output("y", y).unwrap();
    let g = b.finish().unwrap();
    let exe = client.compile(&specc_hlo::to_proto_bytes(&specc_hlo::lower(&g, &[]).unwrap()), 2).unwrap();
    let lit = |v: Vec<f32>, s: &[usize]| Literal::new(s.to_vec(), LiteralData::F32(v)).unwrap();
    let per_device = [
        (lit((0..6).map(|v| v as f32).collect(), &[2, 3]), lit(vec![1., 0., 0., 1., 1., 1.], &[3, 2])),
        (lit((0..6).map(|v| -(v as f32)).collect(), &[2, 3]), lit(vec![2., 1., 0., 3., 1., 0.], &[3, 2])),
    ];
    let buffers: Vec<Vec<specc_exec::pjrt::Buffer>> = per_device
        .iter()
        .enumerate()
        .map(|(dev, (x, w))| {
            [x, w]
                .iter()
                .map(|l| {
                    let dims: Vec<i64> = l.shape.iter().map(|&d| d as i64).collect();
                    client.upload(&l.to_le_bytes(), element_type(DType::F32), &dims, dev).unwrap()
                })
                .collect()
        })
        .collect();
    let args: Vec<Vec<&specc_exec::pjrt::Buffer>> = buffers.iter().map(|b| b.iter().collect()).collect();
    let outs = exe.execute(&args, &[], 1).unwrap();
    assert_eq!(outs.len(), 2);
    for (dev, ((x, w), out)) in per_device.iter().zip(&outs).enumerate() {
        let got = Literal::from_le_bytes(DType::F32, vec![2, 2], &out[0].download(16).unwrap()).unwrap();
        let s = specc_interp::Session::<specc_interp::Cpu>::new(
            g.clone(),
            &specc_ir::WeightStore::new(),
            specc_interp::cpu_device(),
        )
        .unwrap();
        let want = s.run_named(&[("x", x), ("w", w)]).unwrap();
        assert_eq!(got.to_f64_vec(), want[0].1.to_f64_vec(), "device {dev}");
    }
}

/// A row-parallel matrix product (each rank multiplies its slice of the
/// input features and the partial sums are all-reduced), the collective of
/// tensor parallelism: on 2 and 4 XLA CPU devices running one executable,
/// every device gets the unsharded product, and the interpreter's simulated
/// ranks get the same.
#[test]
fn an_all_reduce_sums_over_every_device_like_the_interpreters_ranks() {
    use specc_ir::{GraphBuilder, LiteralData, Op, TensorType};
    let plugin = Plugin::open(&plugin()).unwrap();
    let cpu = plugin.path().file_name().is_some_and(|n| n.to_string_lossy().contains("cpu"));
    let (rows, features, out) = (3usize, 8usize, 5usize);
    let lit = |v: Vec<f32>, s: &[usize]| Literal::new(s.to_vec(), LiteralData::F32(v)).unwrap();
    let x: Vec<f32> = (0..rows * features).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
    let w: Vec<f32> = (0..features * out).map(|i| ((i * 5 % 13) as f32 - 6.0) / 8.0).collect();
    let mut whole = vec![0f64; rows * out];
    for r in 0..rows {
        for o in 0..out {
            whole[r * out + o] = (0..features).map(|f| x[r * features + f] as f64 * w[f * out + o] as f64).sum();
        }
    }
    for ranks in [2usize, 4] {
        let part = features / ranks;
        let mut b = GraphBuilder::new("row_parallel");
        let xs = b.parameter("x", TensorType::fixed(DType::F32, &[rows, part])).unwrap();
        let ws = b.parameter("w", TensorType::fixed(DType::F32, &[part, out])).unwrap();
        let d =
            specc_ir::DotDims { lhs_batch: vec![], rhs_batch: vec![], lhs_contract: vec![1], rhs_contract: vec![0] };
        let partial = b.add("partial", Op::Dot { dims: d }, &[xs, ws]).unwrap();
        let sum = b.add("sum", Op::AllReduce { ranks }, &[partial]).unwrap();
        b.output("y", sum).unwrap();
        let g = b.finish().unwrap();
        // Rank r's slices: columns r*part.. of x, rows r*part.. of w.
        let shards: Vec<(Literal, Literal)> = (0..ranks)
            .map(|r| {
                let xr = (0..rows).flat_map(|i| x[i * features + r * part..i * features + (r + 1) * part].to_vec());
                (lit(xr.collect(), &[rows, part]), lit(w[r * part * out..(r + 1) * part * out].to_vec(), &[part, out]))
            })
            .collect();
        let module = specc_hlo::lower(&g, &[]).unwrap();
        assert!(specc_hlo::to_text(&module).contains(&format!(
            "replica_groups={{{{{}}}}}",
            (0..ranks).map(|r| r.to_string()).collect::<Vec<_>>().join(",")
        )));
        specc_hlo::check(&module, Target::Trn1).unwrap();
        let create: Vec<(&str, i64)> = if cpu { vec![("cpu_device_count", ranks as i64)] } else { vec![] };
        let client = Client::create(&plugin, &create).unwrap();
        let exe = client.compile(&specc_hlo::to_proto_bytes(&module), ranks).unwrap();
        let buffers: Vec<Vec<specc_exec::pjrt::Buffer>> = shards
            .iter()
            .enumerate()
            .map(|(dev, (xr, wr))| {
                [xr, wr]
                    .iter()
                    .map(|l| {
                        let dims: Vec<i64> = l.shape.iter().map(|&d| d as i64).collect();
                        client.upload(&l.to_le_bytes(), element_type(DType::F32), &dims, dev).unwrap()
                    })
                    .collect()
            })
            .collect();
        let args: Vec<Vec<&specc_exec::pjrt::Buffer>> = buffers.iter().map(|b| b.iter().collect()).collect();
        let outs = exe.execute(&args, &[], 1).unwrap();
        // The interpreter: one session per rank, each on its own thread.
        let group = std::sync::Arc::new(specc_interp::RankGroup::new(ranks));
        let simulated: Vec<Vec<f64>> = std::thread::scope(|s| {
            let handles: Vec<_> = shards
                .iter()
                .enumerate()
                .map(|(r, (xr, wr))| {
                    let (g, group) = (g.clone(), group.clone());
                    s.spawn(move || {
                        let sess = specc_interp::Session::<specc_interp::Cpu>::new(
                            g,
                            &specc_ir::WeightStore::new(),
                            specc_interp::cpu_device(),
                        )
                        .unwrap()
                        .as_rank(group, r);
                        sess.run_named(&[("x", xr), ("w", wr)]).unwrap()[0].1.to_f64_vec()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (dev, out) in outs.iter().enumerate() {
            let got = Literal::from_le_bytes(DType::F32, vec![rows, 5], &out[0].download(rows * 5 * 4).unwrap())
                .unwrap()
                .to_f64_vec();
            for (i, (a, b)) in got.iter().zip(&whole).enumerate() {
                assert!((a - b).abs() < 1e-4, "{ranks} ranks, device {dev}, element {i}: {a} vs unsharded {b}");
            }
            assert_eq!(got, simulated[dev], "{ranks} ranks, device {dev}: XLA vs the interpreter's ranks");
        }
        eprintln!("all-reduce over {ranks} XLA CPU devices = the unsharded product = the interpreter's {ranks} ranks");
    }
}

/// A fixture's decode step sharded for tp 2 and 4 (4 is more ranks than its
/// 2 KV heads), as one HLO program on that many XLA CPU devices
/// (per-device weights, caches and rank): every device's
/// logits are the unsharded step's within 1e-4, and each device's cache
/// presents are its block of the unsharded ones.
#[test]
fn a_sharded_decode_step_on_xla_devices_computes_the_unsharded_one() {
    let plugin = Plugin::open(&plugin()).unwrap();
    let cpu = plugin.path().file_name().is_some_and(|n| n.to_string_lossy().contains("cpu"));
    for tp in [2usize, 4] {
        let create: Vec<(&str, i64)> = if cpu { vec![("cpu_device_count", tp as i64)] } else { vec![] };
        let client = Client::create(&plugin, &create).unwrap();
        for arch in ARCHS {
            let dir = fixture(arch);
            let m = specc_onnx::import_file(&dir.join("with_past/model.onnx")).unwrap();
            let g = decode_step(arch);
            let names = |prefix: &str| -> Vec<String> {
                let mut v: Vec<String> = g.params().iter().map(|&p| g.node(p).name.clone()).collect();
                v.extend(g.outputs().iter().map(|o| o.name.clone()));
                v.into_iter().filter(|n| n.starts_with(prefix)).collect()
            };
            let (past, present) = (names("past_key_values."), names("present."));
            let state: Vec<&str> = past.iter().map(String::as_str).collect();
            let outs: Vec<&str> = present.iter().map(String::as_str).collect();
            let plan = specc_opt::shard_plan(&g, tp, &state, &outs).unwrap();
            let sharded = specc_opt::shard(&g, &m.weights, &plan).unwrap();
            let module = specc_hlo::lower(&sharded.graph, &[]).unwrap();
            let exe = client.compile(&specc_hlo::to_proto_bytes(&module), tp).unwrap();
            let ins = read(&dir.join("reference/decode.in.safetensors"));
            let named: Vec<(&str, &Literal)> = ins.iter().map(|(n, l)| (n.as_str(), l)).collect();
            let whole =
                specc_interp::Session::<specc_interp::Cpu>::new(g.clone(), &m.weights, specc_interp::cpu_device())
                    .unwrap()
                    .run_named(&named)
                    .unwrap();
            let sg = &sharded.graph;
            let buffers: Vec<Vec<specc_exec::pjrt::Buffer>> = (0..tp)
                .map(|r| {
                    let mut v = Vec::new();
                    for &p in sg.params() {
                        let name = &sg.node(p).name;
                        let lit = if name == specc_opt::RANK_INPUT {
                            Literal::scalar_i32(r as i32)
                        } else {
                            let l = &ins.iter().find(|(n, _)| n == name).unwrap().1;
                            match plan.split_params.get(name) {
                                Some(&(a, blocks)) => block(l, a, r, tp, blocks),
                                None => l.clone(),
                            }
                        };
                        let dims: Vec<i64> = lit.shape.iter().map(|&d| d as i64).collect();
                        v.push(client.upload(&lit.to_le_bytes(), element_type(lit.dtype()), &dims, r).unwrap());
                    }
                    for d in sg.weights() {
                        let bytes = sharded.weights[r].get(&d.name).unwrap().bytes.read().unwrap();
                        let dims: Vec<i64> = d.ty.shape.as_fixed().unwrap().iter().map(|&x| x as i64).collect();
                        v.push(client.upload(&bytes, element_type(d.ty.dtype), &dims, r).unwrap());
                    }
                    v
                })
                .collect();
            let args: Vec<Vec<&specc_exec::pjrt::Buffer>> = buffers.iter().map(|b| b.iter().collect()).collect();
            let outs = exe.execute(&args, &[], sg.outputs().len()).unwrap();
            let mut worst = 0.0f64;
            for (r, dev_outs) in outs.iter().enumerate() {
                for (o, buf) in sg.outputs().iter().zip(dev_outs) {
                    let ty = sg.ty(o.node);
                    let shape = ty.shape.as_fixed().unwrap();
                    let got = Literal::from_le_bytes(
                        ty.dtype,
                        shape.clone(),
                        &buf.download(ty.dtype.size_bytes() * shape.iter().product::<usize>()).unwrap(),
                    )
                    .unwrap();
                    let full = &whole.iter().find(|(n, _)| *n == o.name).unwrap().1;
                    let want = match plan.split_state_outputs.get(&o.name) {
                        Some(&(a, blocks)) => block(full, a, r, tp, blocks),
                        None => full.clone(),
                    };
                    let d =
                        got.to_f64_vec().iter().zip(want.to_f64_vec()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                    assert!(d < 1e-4, "{arch} device {r} `{}`: {d}", o.name);
                    worst = worst.max(d);
                }
            }
            eprintln!(
                "{arch}: the tp-{tp} rank program on {tp} XLA CPU devices is within {worst:.1e} of the unsharded step"
            );
        }
    }
}
