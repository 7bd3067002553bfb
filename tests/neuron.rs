//! The Neuron backend's contract test: the whole draft->verify loop runs
//! through the backend's real libnrt marshalling code against a C test
//! double of libnrt (tests/nrt_double, built by build.rs, loaded through
//! the same dlopen path as the real runtime). The double checks every call
//! (handles, sizes, names in sets, use after free, double free, leaks at
//! nrt_close), and its nrt_execute hands the bound device buffers to a
//! callback here that runs the graph on the reference interpreter. The
//! tokens must equal the reference backend's, greedy and seeded sampling;
//! caches and weights must never cross to the host after load; each error
//! path must be a typed error that frees everything.
//!
//! The NEFFs are stand-ins written from each graph's HLO proto (entry
//! parameters -> `input{N}`, root tuple elements -> `output{i}`, sizes from
//! the shapes), which is how neuronx-cc names a NEFF's tensors.

mod common;
use common::*;
use prost::Message;
use specc_artifact::Artifact;
use specc_driver::compile::{CompileOptions, GenerationOptions, compile_generation};
use specc_exec::{Engine, GenerateOptions, Mode, Neuron, NeuronOptions, Reference, Sampling};
use specc_interp::{Cpu, Session, Value, cpu_device};
use specc_ir::DType;
use specc_spec::SpecConfig;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The double is one process-wide runtime: tests take turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn double_path() -> PathBuf {
    match option_env!("SPECC_NRT_DOUBLE") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "build.rs did not build the libnrt test double (it builds on Linux only): these contract tests cannot run"
        ),
    }
}

#[repr(C)]
struct Binding {
    name: *const c_char,
    data: *mut u8,
    size: usize,
}

type ExecFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *const Binding,
    usize,
    *const Binding,
    usize,
    c_int,
    c_int,
) -> c_int;

/// The test's handle on the double: its control functions.
struct Double {
    lib: libloading::Library,
}

impl Double {
    fn open() -> Double {
        // SAFETY: our own C library; its only initializers are static data.
        let lib = unsafe { libloading::Library::new(double_path()) }.expect("load the test double");
        let d = Double { lib };
        d.reset();
        d
    }

    fn text(&self, f: &[u8]) -> String {
        // SAFETY: returns a NUL-terminated string owned by the double.
        unsafe {
            let f = self.lib.get::<unsafe extern "C" fn() -> *const c_char>(f).unwrap();
            CStr::from_ptr(f()).to_string_lossy().into_owned()
        }
    }

    fn violations(&self) -> String {
        self.text(b"nrtd_violations\0")
    }

    fn calls(&self) -> String {
        self.text(b"nrtd_calls\0")
    }

    fn reset(&self) {
        // SAFETY: documented control function of the double.
        unsafe { self.lib.get::<unsafe extern "C" fn()>(b"nrtd_reset\0").unwrap()() }
    }

    fn count(&self, what: &str) -> i64 {
        let w = CString::new(what).unwrap();
        // SAFETY: as above.
        unsafe { self.lib.get::<unsafe extern "C" fn(*const c_char) -> i64>(b"nrtd_count\0").unwrap()(w.as_ptr()) }
    }

    fn fail(&self, call: &str, status: i32, after: i32) {
        let c = CString::new(call).unwrap();
        // SAFETY: as above.
        unsafe {
            self.lib.get::<unsafe extern "C" fn(*const c_char, c_int, c_int)>(b"nrtd_fail\0").unwrap()(
                c.as_ptr(),
                status,
                after,
            )
        }
    }

    /// (bytes read, bytes written) by the host since the last reset, of the
    /// tensors whose allocation name starts with `prefix`.
    fn io(&self, prefix: &str) -> (u64, u64) {
        let p = CString::new(prefix).unwrap();
        let (mut r, mut w) = (0u64, 0u64);
        // SAFETY: as above.
        unsafe {
            self.lib.get::<unsafe extern "C" fn(*const c_char, *mut u64, *mut u64)>(b"nrtd_tensor_io\0").unwrap()(
                p.as_ptr(),
                &mut r,
                &mut w,
            )
        };
        (r, w)
    }

    fn set_execute(&self, f: Option<ExecFn>, user: *mut c_void) {
        // SAFETY: as above; `user` outlives every execute (see Device).
        unsafe {
            self.lib.get::<unsafe extern "C" fn(Option<ExecFn>, *mut c_void)>(b"nrtd_set_execute\0").unwrap()(f, user)
        }
    }

    /// Runs every `nrt_execute` on the interpreter over the artifact at
    /// `dir`; the box must outlive the executes (detach with
    /// `set_execute(None, ..)`).
    fn attach_device(&self, dir: &Path) -> Box<Device> {
        let device = Box::new(Device {
            artifact: Artifact::open(dir).unwrap(),
            sessions: Mutex::new(HashMap::new()),
            group: Mutex::new(None),
            error: Mutex::new(None),
            fail_rank: Mutex::new(None),
            calls: Mutex::new(HashMap::new()),
        });
        self.set_execute(Some(execute), &*device as *const Device as *mut c_void);
        device
    }

    /// Nothing open, nothing leaked, no breach of the API recorded.
    fn assert_clean(&self, what: &str) {
        assert_eq!(self.violations(), "", "{what}: the double recorded API breaches");
        assert_eq!(self.count("initialized"), 0, "{what}: nrt_close was not called");
    }
}

/// What the device does in the double's nrt_execute: the graph on the
/// reference interpreter, reading and writing the bound device buffers. The
/// ranks of a tensor-parallel graph call in at once, each from the
/// backend's thread for that rank, and meet at the graph's all-reduces in
/// one `RankGroup` (so the device sums what the backend bound on each core).
struct Device {
    artifact: Artifact,
    /// Per (graph, rank), made on first use; run outside the lock.
    sessions: Mutex<HashMap<(String, usize), Arc<Session<Cpu>>>>,
    group: Mutex<Option<Arc<specc_interp::RankGroup>>>,
    error: Mutex<Option<String>>,
    /// (rank, calls): that rank's executes after its first `calls` fail.
    fail_rank: Mutex<Option<(usize, usize)>>,
    calls: Mutex<HashMap<usize, usize>>,
}

impl Device {
    fn run(
        &self,
        graph: &str,
        rank: usize,
        ranks: usize,
        inputs: &[(&str, &[u8])],
        outputs: &mut [(&str, &mut [u8])],
    ) -> Result<(), String> {
        let calls = {
            let mut c = self.calls.lock().unwrap();
            let n = c.entry(rank).or_insert(0);
            *n += 1;
            *n
        };
        if let Some((r, after)) = *self.fail_rank.lock().unwrap()
            && r == rank
            && calls > after
        {
            // A core that fails mid-call: the ranks waiting for it at a
            // collective are released with an error, as the runtime's
            // collective timeout would.
            let why = format!("injected device failure on rank {rank}");
            if let Some(g) = self.group.lock().unwrap().as_ref() {
                g.poison(&why);
            }
            return Err(why);
        }
        let entry = self.artifact.manifest.graph(graph).map_err(|e| e.to_string())?.clone();
        let buffer = |name: &str| inputs.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);
        let value = |p: &specc_artifact::TensorEntry| -> Result<Value<Cpu>, String> {
            let dtype = DType::from_name(&p.dtype).unwrap();
            let bytes = buffer(&p.neff_name).ok_or(format!("no buffer for {}", p.neff_name))?;
            Ok(Value::from_le_bytes(dtype, &p.shape, bytes, &cpu_device()))
        };
        let key = (graph.to_string(), rank);
        let existing = self.sessions.lock().unwrap().get(&key).cloned();
        let session = match existing {
            Some(s) => s,
            None => {
                // Weights from the device buffers the backend uploaded to
                // this rank's core (so a wrongly uploaded block changes the
                // tokens).
                let ir = self.artifact.graph_ir(&entry).map_err(|e| e.to_string())?;
                let weights =
                    entry.parameters.iter().filter(|p| p.kind == "weight").map(value).collect::<Result<Vec<_>, _>>()?;
                let mut s = Session::with_weights(ir, weights, cpu_device()).map_err(|e| e.to_string())?;
                if ranks > 1 {
                    let group = self
                        .group
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| Arc::new(specc_interp::RankGroup::new(ranks)))
                        .clone();
                    s = s.as_rank(group, rank);
                }
                let s = Arc::new(s);
                self.sessions.lock().unwrap().insert(key, s.clone());
                s
            }
        };
        let args = entry.parameters.iter().filter(|p| p.kind == "input").map(value).collect::<Result<Vec<_>, _>>()?;
        let outs = session.run(args).map_err(|e| {
            if let Some(g) = self.group.lock().unwrap().as_ref() {
                g.poison(&format!("rank {rank}: {e}"));
            }
            e.to_string()
        })?;
        for (o, v) in entry.outputs.iter().zip(outs) {
            let bytes = v.to_literal().to_le_bytes();
            let (_, buf) =
                outputs.iter_mut().find(|(n, _)| *n == o.neff_name).ok_or(format!("no buffer for {}", o.neff_name))?;
            if buf.len() != bytes.len() {
                return Err(format!("{}: buffer {} bytes, value {}", o.neff_name, buf.len(), bytes.len()));
            }
            buf.copy_from_slice(&bytes);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn execute(
    user: *mut c_void,
    graph: *const c_char,
    inputs: *const Binding,
    n_in: usize,
    outputs: *const Binding,
    n_out: usize,
    rank: c_int,
    ranks: c_int,
) -> c_int {
    // SAFETY: the double passes `user` as registered and valid bindings.
    let device = unsafe { &*(user as *const Device) };
    let graph = unsafe { CStr::from_ptr(graph) }.to_string_lossy().into_owned();
    let ins: Vec<(&str, &[u8])> = (0..n_in)
        .map(|i| unsafe {
            let b = &*inputs.add(i);
            (CStr::from_ptr(b.name).to_str().unwrap(), std::slice::from_raw_parts(b.data as *const u8, b.size))
        })
        .collect();
    let mut outs: Vec<(&str, &mut [u8])> = (0..n_out)
        .map(|i| unsafe {
            let b = &*outputs.add(i);
            (CStr::from_ptr(b.name).to_str().unwrap(), std::slice::from_raw_parts_mut(b.data, b.size))
        })
        .collect();
    let (rank, ranks) = (rank as usize, ranks as usize);
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| device.run(&graph, rank, ranks, &ins, &mut outs)));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            *device.error.lock().unwrap() = Some(format!("{graph} rank {rank}: {e}"));
            1
        }
        Err(_) => {
            *device.error.lock().unwrap() = Some(format!("{graph}: the interpreter panicked"));
            1
        }
    }
}

fn pair(role: &str) -> PathBuf {
    repo().join("graphs/pair").join(role).join("with_past/model.onnx")
}

/// The element size of an XLA primitive type (the ones specc emits).
fn element_bytes(t: i32) -> u64 {
    use specc_hlo::proto::primitive::*;
    match t {
        PRED => 1,
        BF16 => 2,
        S32 | U32 | F32 => 4,
        S64 => 8,
        other => panic!("primitive type {other}"),
    }
}

fn shape_bytes(s: &specc_hlo::proto::ShapeProto) -> u64 {
    element_bytes(s.element_type) * s.dimensions.iter().map(|&d| d as u64).product::<u64>()
}

/// A stand-in NEFF for the double, from the graph's HLO proto.
fn stand_in_neff(graph: &str, hlo: &[u8]) -> String {
    let m = specc_hlo::proto::HloModuleProto::decode(hlo).expect("HloModuleProto");
    let shape = m.host_program_shape.expect("program shape");
    let mut s = format!("SPECC-TEST-NEFF 1\ngraph {graph}\n");
    for (i, p) in shape.parameters.iter().enumerate() {
        s.push_str(&format!("input{i} {}\n", shape_bytes(p)));
    }
    for (i, o) in shape.result.expect("result").tuple_shapes.iter().enumerate() {
        s.push_str(&format!("output{i} {}\n", shape_bytes(o)));
    }
    s
}

/// Gives every graph of the artifact at `dir` a NEFF (`edit` may change its
/// text), updating the manifest as neuronx-cc's run would have.
fn attach_neffs(dir: &Path, edit: impl Fn(&str, String) -> String) {
    let mut a = Artifact::open(dir).unwrap();
    for g in &mut a.manifest.graphs {
        let hlo = std::fs::read(dir.join(&g.hlo_pb.file)).unwrap();
        let neff = edit(&g.name, stand_in_neff(&g.name, &hlo));
        let file = format!("graphs/{}.neff", g.name);
        std::fs::write(dir.join(&file), &neff).unwrap();
        g.neff = Some(specc_artifact::FileRef {
            file,
            bytes: neff.len() as u64,
            sha256: specc_artifact::sha256_hex(neff.as_bytes()),
        });
    }
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&a.manifest).unwrap()).unwrap();
    Artifact::open(dir).expect("the edited artifact opens");
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The trained pair for trn1 (s32 narrowing, the Neuron profile's checks),
/// K in {2, 3}, without NEFFs; compiled once per test binary.
fn compiled() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("specc-neuron-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let g = GenerationOptions {
            draft: Some(pair("draft")),
            spec: SpecConfig { ks: vec![2, 3], capacity: 128, buckets: vec![32] },
            tokenizer: None,
        };
        compile_generation(&pair("target"), &dir, &CompileOptions::default(), &g).expect("compile the pair for trn1");
        dir
    })
}

/// A copy of the compiled pair with stand-in NEFFs (edited by `edit`).
fn with_neffs(name: &str, edit: impl Fn(&str, String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specc-neuron-{}-{name}", std::process::id()));
    copy_dir(compiled(), &dir);
    attach_neffs(&dir, edit);
    dir
}

fn neuron() -> Neuron {
    Neuron::new(NeuronOptions { library: Some(double_path()), core: 0 })
}

fn prompt() -> Vec<i64> {
    let text = specc_driver::text::Text::from_file(&repo().join("graphs/pair/tokenizer.json")).unwrap();
    text.encode("{\"user\": {\"id\": 17, \"name\": \"").unwrap()
}

fn options(mode: Mode, sampling: Option<Sampling>, k: usize) -> GenerateOptions {
    let mut o = GenerateOptions::greedy(40, mode);
    o.ignore_eos = true;
    o.sampling = sampling;
    o.k = Some(k);
    o
}

#[test]
fn generation_through_the_neuron_backend_equals_the_reference_backend() {
    let _turn = turn();
    let dir = with_neffs("ok", |_, s| s);
    let artifact = Artifact::open(&dir).unwrap();
    let double = Double::open();
    let device = double.attach_device(&dir);

    let sampled = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 1234 };
    let cases: [(&str, GenerateOptions); 5] = [
        ("plain greedy", options(Mode::Plain, None, 3)),
        ("draft greedy K=3", options(Mode::Draft, None, 3)),
        ("draft greedy K=2", options(Mode::Draft, None, 2)),
        ("prompt lookup greedy", options(Mode::PromptLookup { max_ngram: 3 }, None, 3)),
        ("draft sampling K=3, seeded", options(Mode::Draft, Some(sampled), 3)),
    ];
    let mut reference = Engine::load(&artifact, Reference::default()).unwrap();
    let mut engine = Engine::load(&artifact, neuron()).unwrap();
    assert_eq!(double.violations(), "", "loading");
    assert!(double.calls().contains("nrt_init(1)"), "initialized for a framework-less application");
    // Each weight uploaded exactly once, however many graphs bind it.
    for model in ["target", "draft"] {
        let weights: std::collections::BTreeMap<&str, usize> = artifact
            .manifest
            .graphs
            .iter()
            .flat_map(|g| {
                g.parameters.iter().filter(|p| p.kind == "weight" && p.model.as_deref().unwrap_or(&g.model) == model)
            })
            .map(|p| {
                (p.name.as_str(), p.shape.iter().product::<usize>() * DType::from_name(&p.dtype).unwrap().size_bytes())
            })
            .collect();
        let uploaded = weights.values().sum::<usize>() as u64;
        assert_eq!(double.io(&format!("{model}::")), (0, uploaded), "{model}: {} weights", weights.len());
    }
    let state_bytes: u64 = artifact
        .manifest
        .graphs
        .iter()
        .flat_map(|g| g.outputs.iter().filter_map(|o| o.aliases_parameter.map(|p| &g.parameters[p])))
        .map(|p| (p.shape.iter().product::<usize>() * DType::from_name(&p.dtype).unwrap().size_bytes()) as u64)
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .sum();
    for (what, o) in &cases {
        double.reset();
        let want = reference.generate(&prompt(), o, &mut |_| {}).unwrap();
        let got = engine.generate(&prompt(), o, &mut |_| {}).unwrap_or_else(|e| {
            panic!("{what}: {e}; device: {:?}; double: {}", device.error.lock().unwrap(), double.violations())
        });
        assert_eq!(got.tokens, want.tokens, "{what}: the Neuron backend's tokens differ from the reference backend's");
        assert_eq!(got.metrics.num_accepted_tokens, want.metrics.num_accepted_tokens, "{what}");
        assert_eq!(
            double.count("executes") as u64,
            got.metrics.device_calls,
            "{what}: one nrt_execute per device call"
        );
        assert_eq!(double.violations(), "", "{what}");
        // The caches and weights stay on the device: after load, the host
        // neither reads nor writes them; only the small per-call tensors move.
        for prefix in ["state::", "target::", "draft::"] {
            assert_eq!(double.io(prefix), (0, 0), "{what}: host I/O on `{prefix}` tensors during generation");
        }
        let (r, w) = double.io("");
        let per_call = (r + w) / got.metrics.device_calls;
        assert!(per_call * 1000 < state_bytes, "{what}: {per_call} bytes per call vs {state_bytes} bytes of cache");
        eprintln!(
            "{what}: {} tokens, {} calls, {per_call} bytes moved per call",
            got.tokens.len(),
            got.metrics.device_calls
        );
    }
    drop(engine);
    double.set_execute(None, std::ptr::null_mut());
    double.assert_clean("after the engine is dropped");
    assert_eq!(double.count("live_tensors"), 0);
}

fn load_error(dir: &Path, double: &Double) -> String {
    let artifact = Artifact::open(dir).unwrap();
    let e = Engine::load(&artifact, neuron()).err().expect("the load must fail").to_string();
    double.assert_clean("after a failed load");
    e
}

#[test]
fn a_failing_nrt_load_is_a_typed_error_and_frees_everything() {
    let _turn = turn();
    let dir = with_neffs("load", |_, s| s);
    let double = Double::open();
    // The third NEFF fails to load, after weights, caches and two graphs.
    double.fail("nrt_load", 4, 2);
    let e = load_error(&dir, &double);
    for part in ["nrt_load failed for graph `", "NRT_RESOURCE (4)", "out of resources (test double)"] {
        assert!(e.contains(part), "{part:?} not in: {e}");
    }
    assert!(double.calls().contains("nrt_unload"), "the two loaded graphs are unloaded");
    // A failing nrt_init: nothing to close, and said so.
    double.reset();
    double.fail("nrt_init", 1, 0);
    let e = Engine::load(&Artifact::open(&dir).unwrap(), neuron()).err().unwrap().to_string();
    assert!(e.contains("nrt_init failed") && e.contains("NRT_FAILURE (1)"), "{e}");
    double.assert_clean("after a failed nrt_init");
}

#[test]
fn an_execute_returning_exec_oob_is_a_typed_error() {
    let _turn = turn();
    let dir = with_neffs("oob", |_, s| s);
    let double = Double::open();
    let _device = double.attach_device(&dir);
    let mut engine = Engine::load(&Artifact::open(&dir).unwrap(), neuron()).unwrap();
    double.fail("nrt_execute", 1006, 2);
    let e = engine.generate(&prompt(), &options(Mode::Draft, None, 3), &mut |_| {}).expect_err("must fail").to_string();
    for part in ["nrt_execute failed for graph `", "NRT_EXEC_OOB (1006)", "out of bounds (test double)"] {
        assert!(e.contains(part), "{part:?} not in: {e}");
    }
    drop(engine);
    double.set_execute(None, std::ptr::null_mut());
    double.assert_clean("after a failed execute");
}

#[test]
fn a_neff_whose_tensors_do_not_match_the_manifest_is_refused() {
    let _turn = turn();
    let double = Double::open();
    // A renamed tensor (as a NEFF from another compile might have).
    let dir =
        with_neffs("renamed", |g, s| if g == "target_decode" { s.replacen("\ninput0 ", "\ninput_ids ", 1) } else { s });
    let e = load_error(&dir, &double);
    for part in ["graph `target_decode`", "do not match the manifest", "`input0`", "is not in the NEFF", "`input_ids`"]
    {
        assert!(e.contains(part), "{part:?} not in: {e}");
    }
    // A size that differs (another capacity).
    let dir = with_neffs("resized", |g, s| {
        if g == "target_decode" {
            s.lines()
                .map(|l| if l.starts_with("output0 ") { "output0 12".to_string() } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            s
        }
    });
    let e = load_error(&dir, &double);
    assert!(e.contains("`output0` has 12 bytes in the NEFF"), "{e}");
    // Not a NEFF at all: the runtime refuses it.
    let dir = with_neffs("garbage", |g, s| if g == "target_decode" { "not a neff".into() } else { s });
    let e = load_error(&dir, &double);
    assert!(e.contains("nrt_load failed for graph `target_decode`") && e.contains("NRT_INVALID (2)"), "{e}");
}

#[test]
fn missing_runtime_or_neffs_say_what_to_install() {
    // No NEFFs (compiled without neuronx-cc): said before touching libnrt.
    let artifact = Artifact::open(compiled()).unwrap();
    let e = Engine::load(&artifact, neuron()).err().unwrap().to_string();
    assert!(e.contains("no NEFF for 13 of its graphs") && e.contains(" more)") && e.contains("neuronx-cc"), "{e}");
    // An artifact for XLA: no NEFF can exist, and the fix is the target.
    let xla = std::env::temp_dir().join(format!("specc-neuron-{}-xla", std::process::id()));
    let _ = std::fs::remove_dir_all(&xla);
    let g = GenerationOptions {
        draft: None,
        spec: SpecConfig { ks: vec![2], capacity: 64, buckets: vec![16] },
        tokenizer: None,
    };
    let o = CompileOptions { target: specc_hlo::Target::Xla, ..CompileOptions::default() };
    compile_generation(&pair("target"), &xla, &o, &g).unwrap();
    let e = Engine::load(&Artifact::open(&xla).unwrap(), neuron()).err().unwrap().to_string();
    assert!(e.contains("compiled for target `xla`") && e.contains("--target trn1"), "{e}");
    // NEFFs but no libnrt.
    let _turn = turn();
    let dir = with_neffs("nolib", |_, s| s);
    let missing = Neuron::new(NeuronOptions { library: Some("/nonexistent/libnrt.so.1".into()), core: 0 });
    let e = Engine::load(&Artifact::open(&dir).unwrap(), missing).err().unwrap().to_string();
    assert!(e.contains("aws-neuronx-runtime-lib") && e.contains("/nonexistent/libnrt.so.1"), "{e}");
    // The same from the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specc"))
        .args([
            "run",
            dir.to_str().unwrap(),
            "--prompt-ids",
            "1,2,3",
            "--backend",
            "neuron",
            "--libnrt",
            "/nonexistent/libnrt.so.1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("aws-neuronx-runtime-lib"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specc"))
        .args(["run", compiled().to_str().unwrap(), "--prompt-ids", "1,2,3", "--backend", "neuron"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no NEFF"), "{stderr}");
}

#[test]
fn a_core_that_does_not_exist_is_refused_by_the_runtime() {
    let _turn = turn();
    let dir = with_neffs("core", |_, s| s);
    let double = Double::open();
    let artifact = Artifact::open(&dir).unwrap();
    let e =
        Engine::load(&artifact, Neuron::new(NeuronOptions { library: Some(double_path()), core: 7 })).err().unwrap();
    let e = e.to_string();
    assert!(e.contains("NeuronCore 7") && e.contains("NRT_INVALID"), "{e}");
    // The double records the bad core as a breach; nothing else may be.
    let v = double.violations();
    assert!(v.lines().all(|l| l.contains("NeuronCore 7 does not exist")), "{v}");
    assert_eq!(double.count("initialized"), 0);
}

/// The double's own checks must catch what they claim to (else a clean
/// run above would prove nothing): misuse it directly and read the record.
#[test]
fn the_double_catches_double_free_use_after_free_and_leaks() {
    let _turn = turn();
    let d = Double::open();
    type Alloc = unsafe extern "C" fn(c_int, c_int, usize, *const c_char, *mut *mut c_void) -> c_int;
    // SAFETY: the double's own symbols with their documented signatures;
    // the misuse is deliberate and the double survives it by design.
    unsafe {
        let init =
            d.lib.get::<unsafe extern "C" fn(c_int, *const c_char, *const c_char) -> c_int>(b"nrt_init\0").unwrap();
        let close = d.lib.get::<unsafe extern "C" fn()>(b"nrt_close\0").unwrap();
        let alloc = d.lib.get::<Alloc>(b"nrt_tensor_allocate\0").unwrap();
        let free = d.lib.get::<unsafe extern "C" fn(*mut *mut c_void)>(b"nrt_tensor_free\0").unwrap();
        let write = d
            .lib
            .get::<unsafe extern "C" fn(*mut c_void, *const c_void, usize, usize) -> c_int>(b"nrt_tensor_write\0")
            .unwrap();
        assert_eq!(init(1, c"".as_ptr(), c"".as_ptr()), 0);
        let (mut a, mut b) = (std::ptr::null_mut(), std::ptr::null_mut());
        assert_eq!(alloc(0, 0, 16, c"freed twice".as_ptr(), &mut a), 0);
        assert_eq!(alloc(0, 0, 16, c"leaked".as_ptr(), &mut b), 0);
        let stale = a;
        free(&mut a);
        let mut again = stale;
        free(&mut again);
        let bytes = [0u8; 32];
        assert_ne!(write(stale, bytes.as_ptr().cast(), 0, 4), 0, "a write after free fails");
        assert_ne!(write(b, bytes.as_ptr().cast(), 0, 32), 0, "a write past the end fails");
        close();
    }
    let v = d.violations();
    for part in [
        "double free of tensor `freed twice`",
        "tensor `freed twice` used after free",
        "nrt_tensor_write `leaked`: 32 bytes at 0, tensor has 16",
        "leak: tensor `leaked` (16 bytes) still allocated at nrt_close",
    ] {
        assert!(v.contains(part), "{part:?} not recorded:\n{v}");
    }
    d.reset();
}

/// A `--tp 2` artifact runs one rank per NeuronCore: every graph loaded on
/// cores 0 and 1 with nrt_load_collectives (rank r of 2), each rank's
/// weight blocks and caches on its own core, and the ranks' copies executed
/// at once from their own threads, meeting at the graphs' all-reduces in
/// the double's device. Tokens and acceptance equal the reference
/// backend's in every mode; nothing leaks. Without NEURON_RT_ROOT_COMM_ID
/// (which the specc command sets itself) the load is refused with how to
/// set it, before libnrt is opened.
#[test]
fn a_tensor_parallel_artifact_runs_one_rank_per_core_through_the_collectives() {
    let _turn = turn();
    let dir = std::env::temp_dir().join(format!("specc-neuron-{}-tp2", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let g = GenerationOptions {
        draft: Some(pair("draft")),
        spec: SpecConfig { ks: vec![2, 3], capacity: 128, buckets: vec![32] },
        tokenizer: None,
    };
    compile_generation(&pair("target"), &dir, &CompileOptions { tp: 2, ..CompileOptions::default() }, &g).unwrap();
    attach_neffs(&dir, |_, s| s);
    let artifact = Artifact::open(&dir).unwrap();
    let double = Double::open();
    const COMM: &str = "NEURON_RT_ROOT_COMM_ID";
    // SAFETY: the tests of this binary take turns (`turn`), and none other
    // reads the environment from C while one runs.
    unsafe { std::env::remove_var(COMM) };
    let e = Engine::load(&artifact, neuron()).err().unwrap().to_string();
    assert!(e.contains("--tp 2") && e.contains("NEURON_RT_ROOT_COMM_ID=localhost:"), "{e}");
    assert_eq!(double.count("inits"), 0, "libnrt was initialized before the refusal");
    // SAFETY: as above.
    unsafe { std::env::set_var(COMM, "localhost:62182") };
    let device = double.attach_device(&dir);
    let mut reference = Engine::load(&artifact, Reference::default()).unwrap();
    let mut engine = Engine::load(&artifact, neuron()).unwrap();
    assert_eq!(double.violations(), "", "loading");
    let calls = double.calls();
    let graphs = artifact.manifest.graphs.len();
    for r in 0..2 {
        let loads = calls.lines().filter(|l| l.contains(&format!("nc {r}, rank {r} of 2"))).count();
        assert_eq!(loads, graphs, "every graph loaded as rank {r} on core {r}:\n{calls}");
    }
    assert!(!calls.contains("nrt_load("), "a tensor-parallel graph was loaded without its collectives");
    assert!(engine.backend_description().contains("NeuronCores 0-1 (tp 2"), "{}", engine.backend_description());
    let sampled = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 77 };
    let cases: [(&str, GenerateOptions); 4] = [
        ("plain greedy", options(Mode::Plain, None, 3)),
        ("draft greedy K=3", options(Mode::Draft, None, 3)),
        ("prompt lookup greedy", options(Mode::PromptLookup { max_ngram: 3 }, None, 2)),
        ("draft sampling K=2, seeded", options(Mode::Draft, Some(sampled), 2)),
    ];
    let mut accepted = 0;
    for (what, o) in &cases {
        double.reset();
        let want = reference.generate(&prompt(), o, &mut |_| {}).unwrap();
        let got = engine.generate(&prompt(), o, &mut |_| {}).unwrap_or_else(|e| {
            panic!("{what}: {e}; device: {:?}; double: {}", device.error.lock().unwrap(), double.violations())
        });
        assert_eq!(got.tokens, want.tokens, "{what}: tp 2 on the Neuron backend vs the reference backend");
        assert_eq!(got.metrics.num_accepted_tokens, want.metrics.num_accepted_tokens, "{what}");
        assert_eq!(
            double.count("executes") as u64,
            2 * got.metrics.device_calls,
            "{what}: one nrt_execute per rank per call"
        );
        assert_eq!(double.violations(), "", "{what}");
        for prefix in ["state::", "target::", "draft::"] {
            assert_eq!(double.io(prefix), (0, 0), "{what}: host I/O on `{prefix}` tensors during generation");
        }
        accepted += got.metrics.num_accepted_tokens;
        eprintln!(
            "{what}: {} tokens, {} accepted, {} calls",
            got.tokens.len(),
            got.metrics.num_accepted_tokens,
            got.metrics.device_calls
        );
    }
    assert!(accepted > 0, "no proposal was accepted: the comparison proves little");
    // Rank 1's core fails a few calls on: the call returns (rank 0 is not
    // left waiting at the all-reduce), the error names every failing rank,
    // and everything is freed.
    *device.fail_rank.lock().unwrap() = Some((1, device.calls.lock().unwrap().get(&1).copied().unwrap_or(0) + 3));
    let e =
        engine.generate(&prompt(), &cases[1].1, &mut |_| {}).err().expect("a failing rank fails the call").to_string();
    assert!(e.contains("2 of 2 ranks failed") && e.contains("rank 1: nrt_execute failed"), "{e}");
    let device_error = device.error.lock().unwrap().clone().unwrap_or_default();
    assert!(device_error.contains("injected device failure on rank 1"), "{device_error}");
    eprintln!("a rank failing mid-call: {e}");
    drop(engine);
    double.set_execute(None, std::ptr::null_mut());
    double.assert_clean("after the engine is dropped");
    assert_eq!(double.count("live_tensors"), 0);
}
