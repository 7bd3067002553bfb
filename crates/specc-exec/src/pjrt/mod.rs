//! The PJRT backend: an artifact's HLO on XLA's own runtimes through their
//! plugins (`xla_cpu_pjrt.so` from the `xla-cpu-pjrt` wheel, the CUDA
//! plugin from `jax-cuda12-pjrt`, AWS's `libneuronpjrt.so`), opened at run
//! time with the binding in `client` and `sys`.
//!
//! The same contract as the Neuron backend: each graph's `.hlo.pb` is
//! compiled once at load (or loaded from the executable cache, keyed like
//! the NEFF cache by HLO, options and plugin), each weight is uploaded once
//! and shared by every graph of its model, the KV caches are device buffers
//! donated to their aliased outputs (updated in place), and after load only
//! the per-call tensors (tokens, positions, seeds, counts) cross to and from
//! the host.
//!
//! Architecture Invariant: this backend reads artifacts only: it never
//! imports ONNX or emits HLO; what runs is the `.hlo.pb` the compiler wrote.

mod client;
pub mod sys;

pub use client::{Buffer, Client, Executable, OutputSpec, PjrtError, Plugin, compile_options};

use crate::backend::{Backend, BackendError};
use specc_artifact::{Artifact, GraphEntry, TensorEntry};
use specc_ir::{DType, Literal};
use std::collections::HashMap;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which plugin: a family name (`cpu`, `cuda`) or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginChoice {
    Cpu,
    Cuda,
    Path(PathBuf),
}

impl PluginChoice {
    pub fn parse(s: &str) -> PluginChoice {
        match s {
            "cpu" => PluginChoice::Cpu,
            "cuda" | "gpu" => PluginChoice::Cuda,
            other => PluginChoice::Path(PathBuf::from(other)),
        }
    }
}

/// Where compiled executables are cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExecutableCache {
    /// `$SPECC_PJRT_CACHE`, else `$XDG_CACHE_HOME/specc/pjrt`, else
    /// `~/.cache/specc/pjrt`.
    #[default]
    Default,
    Dir(PathBuf),
    Off,
}

#[derive(Clone, Debug, Default)]
pub struct PjrtOptions {
    /// `--pjrt-plugin` (else `$SPECC_PJRT_PLUGIN`, else the `cpu` wheel).
    pub plugin: Option<PluginChoice>,
    pub cache: ExecutableCache,
    /// Devices of the client (1 for a single-device artifact).
    pub devices: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PjrtBackendError {
    #[error(
        "no PJRT plugin for {family}: install it with `pip install {package}` (into the active virtual environment, or `.venv-pjrt` in the current directory), or give --pjrt-plugin PATH or $SPECC_PJRT_PLUGIN; looked in: {}",
        .tried.join(", ")
    )]
    NotFound { family: &'static str, package: &'static str, tried: Vec<String> },
    #[error(transparent)]
    Pjrt(#[from] PjrtError),
    #[error("graph `{graph}`: {message}")]
    Graph { graph: String, message: String },
}

impl From<PjrtError> for BackendError {
    fn from(e: PjrtError) -> BackendError {
        BackendError::Pjrt(Box::new(e.into()))
    }
}

impl From<PjrtBackendError> for BackendError {
    fn from(e: PjrtBackendError) -> BackendError {
        BackendError::Pjrt(Box::new(e))
    }
}

/// The wheel and the file inside it of each plugin family.
fn family(choice: &PluginChoice) -> Option<(&'static str, &'static str, &'static str)> {
    match choice {
        PluginChoice::Cpu => Some(("cpu", "xla-cpu-pjrt==0.0.1", "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so")),
        PluginChoice::Cuda => Some(("cuda", "jax-cuda12-pjrt==0.12.0.1", "jax_plugins/xla_cuda12/xla_cuda_plugin.so")),
        PluginChoice::Path(_) => None,
    }
}

/// The Python environments to look in: the active virtual or conda
/// environment, the project's venvs in the current directory
/// (`.venv-pjrt`, `.venv-ci`, `.venv`) and the user's `~/.local`.
fn environment_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            roots.push(PathBuf::from(v));
        }
    }
    for local in [".venv-pjrt", ".venv-ci", ".venv"] {
        roots.push(PathBuf::from(local));
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(home).join(".local"));
    }
    roots
}

/// The `lib/python3*/site-packages` directories of each environment root.
fn site_packages_of(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root.join("lib")) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("python3") {
                dirs.push(e.path().join("site-packages"));
            }
        }
    }
    dirs
}

/// `python3`'s own site-packages directories (asked last: it costs a
/// process start).
fn python_site_packages() -> Vec<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import site; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))"])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).lines().map(PathBuf::from).collect(),
        _ => vec![],
    }
}

/// Finds the plugin: `choice` (the flag), else `$SPECC_PJRT_PLUGIN`, else
/// the `cpu` wheel; a family name is looked up in the Python environments.
/// Returns the file and how it was found.
pub fn find_plugin(choice: Option<&PluginChoice>) -> Result<(PathBuf, String), PjrtBackendError> {
    find_plugin_in(choice, &[])
}

/// As [`find_plugin`], looking first in the Python environments rooted at
/// `venvs` (tests name the project's .venv-ci this way).
pub fn find_plugin_in(choice: Option<&PluginChoice>, venvs: &[PathBuf]) -> Result<(PathBuf, String), PjrtBackendError> {
    let (choice, origin) = match choice {
        Some(c) => (c.clone(), "chosen by --pjrt-plugin"),
        None => match std::env::var("SPECC_PJRT_PLUGIN") {
            Ok(v) if !v.is_empty() => (PluginChoice::parse(&v), "chosen by $SPECC_PJRT_PLUGIN"),
            _ => (PluginChoice::Cpu, "the default plugin"),
        },
    };
    let dirs: Vec<PathBuf> = [site_packages_of(venvs), site_packages_of(&environment_roots()), python_site_packages()]
        .into_iter()
        .flatten()
        .collect();
    find_plugin_among(&choice, origin, &dirs)
}

/// Resolves `choice` (found by `origin`): a path as given, a family name
/// to its wheel's file in the first of `site_packages` that has it.
pub fn find_plugin_among(
    choice: &PluginChoice,
    origin: &str,
    site_packages: &[PathBuf],
) -> Result<(PathBuf, String), PjrtBackendError> {
    let Some((name, package, file)) = family(choice) else {
        let PluginChoice::Path(p) = choice else { unreachable!("families are handled above") };
        return Ok((p.clone(), format!("the file {origin}")));
    };
    let mut tried = Vec::new();
    for d in site_packages {
        let candidate = d.join(file);
        if candidate.is_file() {
            return Ok((candidate, format!("the `{package}` wheel, {origin}")));
        }
        tried.push(d.display().to_string());
    }
    if tried.is_empty() {
        tried.push(
            "no Python environment ($VIRTUAL_ENV, $CONDA_PREFIX, .venv-pjrt, .venv-ci, .venv, ~/.local, python3)"
                .into(),
        );
    }
    Err(PjrtBackendError::NotFound { family: name, package, tried })
}

/// The PJRT buffer type of a specc dtype.
pub fn element_type(d: DType) -> c_int {
    match d {
        DType::Bool => sys::buffer_type::PRED,
        DType::I32 => sys::buffer_type::S32,
        DType::I64 => sys::buffer_type::S64,
        DType::F32 => sys::buffer_type::F32,
        DType::BF16 => sys::buffer_type::BF16,
    }
}

fn dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

fn zeros(dtype: DType, shape: &[usize]) -> Vec<u8> {
    vec![0u8; dtype.size_bytes() * shape.iter().product::<usize>()]
}

/// What goes in each parameter slot of a graph.
enum Slot {
    /// Uploaded on each call.
    Input { name: String, dtype: DType, shape: Vec<usize> },
    /// A resident state buffer (a KV cache), donated to its aliased output.
    State(String),
    /// A resident weight of (model, name).
    Weight(String, String),
    /// The device's tensor-parallel rank (resident, uploaded at load).
    Rank,
}

/// Where each output goes.
enum Out {
    /// Back to the host.
    Host { name: String, dtype: DType, shape: Vec<usize> },
    /// Replaces the named state buffer.
    State(String),
}

struct Loaded {
    slots: Vec<Slot>,
    outs: Vec<Out>,
    donate: Vec<usize>,
    exe: Executable,
}

/// Load and transfer counts, for reports and the contract test.
#[derive(Clone, Debug, Default)]
pub struct PjrtStats {
    /// Graphs in the artifact, and those made ready so far.
    pub graphs: usize,
    /// Graphs compiled by the plugin, and graphs loaded from the cache.
    pub compiled: usize,
    pub from_cache: usize,
    /// Opening the plugin, reading and checking every HLO, uploading the
    /// weights and the zeroed caches.
    pub load_seconds: f64,
    /// Compiling (or loading from the cache) the graphs prepared so far.
    pub prepare_seconds: f64,
    pub weight_bytes: u64,
    pub state_bytes: u64,
    /// Bytes that crossed to and from the devices since load.
    pub bytes_to_device: u64,
    pub bytes_to_host: u64,
    pub executions: u64,
}

pub struct Pjrt {
    options: PjrtOptions,
    // Drop order: executables and buffers before the client, the client
    // before the plugin (each holds the plugin's Arc).
    graphs: HashMap<String, Loaded>,
    /// Per (model, name), one buffer per device (tensor-parallel rank):
    /// each rank's block of a split weight, a copy of a replicated one.
    weights: HashMap<(String, String), Vec<Buffer>>,
    /// Per state name, one buffer per device.
    state: HashMap<String, Vec<Buffer>>,
    /// Each device's rank as an s32 scalar (for programs that take it).
    ranks: Vec<Buffer>,
    /// Graphs read and checksummed at load, compiled when first prepared.
    pending: HashMap<String, (GraphEntry, Vec<u8>)>,
    cache: Option<CacheDir>,
    client: Option<Client>,
    description: String,
    stats: PjrtStats,
}

impl Pjrt {
    pub fn new(options: PjrtOptions) -> Pjrt {
        Pjrt {
            options,
            graphs: HashMap::new(),
            weights: HashMap::new(),
            state: HashMap::new(),
            ranks: Vec::new(),
            pending: HashMap::new(),
            cache: None,
            client: None,
            description: String::new(),
            stats: PjrtStats::default(),
        }
    }

    /// The plugin, platform and how it was found (after `load`).
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn stats(&self) -> &PjrtStats {
        &self.stats
    }

    /// The device address of a state buffer on device 0 (tests check that
    /// donation updates the cache in place).
    pub fn state_address(&self, name: &str) -> Option<usize> {
        self.state.get(name)?.first().and_then(|b| b.address().ok())
    }

    /// Device 0's state buffer read back (for checking the loop against
    /// others); under tensor parallelism, rank 0's block.
    pub fn state(&self, name: &str, dtype: DType, shape: &[usize]) -> Option<Literal> {
        let b = self.state.get(name)?.first()?;
        let bytes = b.download(dtype.size_bytes() * shape.iter().product::<usize>()).ok()?;
        Literal::from_le_bytes(dtype, shape.to_vec(), &bytes).ok()
    }

    /// The devices the artifact runs on (its tp).
    pub fn devices(&self) -> usize {
        self.ranks.len().max(1)
    }

    fn load_all(&mut self, artifact: &Artifact) -> Result<(), BackendError> {
        let t0 = Instant::now();
        let (path, how) = find_plugin(self.options.plugin.as_ref())?;
        let plugin = Plugin::open(&path)?;
        // One device per tensor-parallel rank.
        let devices = self.options.devices.max(artifact.manifest.tp).max(1);
        self.options.devices = devices;
        // The CPU plugin makes 4 devices unless told; other plugins refuse
        // options they do not know.
        let cpu = path.file_name().is_some_and(|n| n.to_string_lossy().contains("cpu"));
        let options: Vec<(&str, i64)> = if cpu { vec![("cpu_device_count", devices as i64)] } else { vec![] };
        let client = Client::create(&plugin, &options)?;
        if client.device_count() < devices {
            return Err(PjrtError::Invalid(format!(
                "the plugin offers {} device(s); {devices} are needed",
                client.device_count()
            ))
            .into());
        }
        let (major, minor) = plugin.version();
        self.description = format!(
            "XLA {} {} through {} (PJRT C API {major}.{minor}; {how})",
            client.platform(),
            client.platform_version(),
            path.display(),
        );
        let cache = CacheDir::new(&self.options.cache, &plugin, &client);
        // Every HLO is read (and so checksummed) now; each is compiled when
        // a generation first needs it (`prepare`), not all up front: a run
        // uses a handful of an artifact's graphs, and XLA CPU takes 0.3-4 s
        // per graph (measured on the bundled pair's 32).
        for entry in &artifact.manifest.graphs {
            let hlo = artifact.read(&entry.hlo_pb)?;
            self.pending.insert(entry.name.clone(), (entry.clone(), hlo));
        }
        self.stats.graphs = self.pending.len();
        // Each model's weights once, for every graph that reads them.
        for m in &artifact.manifest.models {
            let used: Vec<&TensorEntry> = artifact
                .manifest
                .graphs
                .iter()
                .flat_map(|g| g.parameters.iter().filter(|p| p.kind == "weight").map(move |p| (g, p)))
                .filter(|(g, p)| p.model.as_deref().unwrap_or(&g.model) == m.name)
                .map(|(_, p)| p)
                .collect();
            if used.is_empty() {
                continue;
            }
            let stores = artifact.rank_stores(&m.name)?;
            for rank in 0..devices {
                for p in &used {
                    let key = (m.name.clone(), p.name.clone());
                    if self.weights.get(&key).is_some_and(|b| b.len() > rank) {
                        continue;
                    }
                    let e = stores.get(rank, &p.name).ok_or_else(|| PjrtBackendError::Graph {
                        graph: m.name.clone(),
                        message: format!("no weight `{}` in model `{}`", p.name, m.name),
                    })?;
                    let bytes = e
                        .bytes
                        .read()
                        .map_err(|source| specc_artifact::ArtifactError::Io { path: p.name.clone(), source })?;
                    let shape = e.ty.shape.as_fixed().unwrap_or_default();
                    let b = client.upload(&bytes, element_type(e.ty.dtype), &dims(&shape), rank)?;
                    self.stats.weight_bytes += bytes.len() as u64;
                    self.weights.entry(key).or_default().push(b);
                }
            }
        }
        for rank in 0..devices {
            let r = (rank as i32).to_le_bytes();
            self.ranks.push(client.upload(&r, element_type(DType::I32), &[], rank)?);
        }
        // State (KV caches), zeroed once.
        for entry in &artifact.manifest.graphs {
            for o in &entry.outputs {
                let Some(p) = o.aliases_parameter else { continue };
                let param = &entry.parameters[p];
                if self.state.contains_key(&param.name) {
                    continue;
                }
                let dtype = entry_dtype(entry, param)?;
                let z = zeros(dtype, &param.shape);
                let mut per_device = Vec::with_capacity(devices);
                for rank in 0..devices {
                    self.stats.state_bytes += z.len() as u64;
                    per_device.push(client.upload(&z, element_type(dtype), &dims(&param.shape), rank)?);
                }
                self.state.insert(param.name.clone(), per_device);
            }
        }
        self.client = Some(client);
        self.cache = Some(cache);
        self.stats.load_seconds = t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Compiles (or loads from the cache) the pending graphs among `names`,
    /// several at once on the host's cores.
    fn prepare_graphs(&mut self, names: &[String]) -> Result<(), BackendError> {
        let todo: Vec<&String> =
            names.iter().filter(|n| !self.graphs.contains_key(*n) && self.pending.contains_key(*n)).collect();
        if todo.is_empty() {
            return Ok(());
        }
        let t0 = Instant::now();
        let (Some(client), Some(cache)) = (self.client.as_ref(), self.cache.as_ref()) else {
            return Err(BackendError::NoGraph(todo[0].clone()));
        };
        let devices = self.options.devices.max(1);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(todo.len());
        let pending = &self.pending;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<(String, Result<(Loaded, bool), PjrtBackendError>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(name) = todo.get(i) else { break };
                            let (entry, hlo) = &pending[*name];
                            let r = cache.load_or_compile(client, entry, hlo, devices).and_then(|(exe, cached)| {
                                check_outputs(entry, &exe)?;
                                Ok((plan(entry, exe)?, cached))
                            });
                            done.push(((*name).clone(), r));
                        }
                        done
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
        });
        let mut first_error = None;
        for (name, r) in results {
            match r {
                Ok((loaded, cached)) => {
                    if cached {
                        self.stats.from_cache += 1;
                    } else {
                        self.stats.compiled += 1;
                    }
                    self.graphs.insert(name, loaded);
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        self.stats.prepare_seconds += t0.elapsed().as_secs_f64();
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

fn entry_dtype(g: &GraphEntry, t: &TensorEntry) -> Result<DType, PjrtBackendError> {
    DType::from_name(&t.dtype).ok_or_else(|| PjrtBackendError::Graph {
        graph: g.name.clone(),
        message: format!("tensor `{}` has unknown dtype `{}`", t.name, t.dtype),
    })
}

/// The compiled program's outputs must be the manifest's, in order, with
/// the same types: an artifact whose HLO and manifest disagree is refused
/// at load, not run.
fn check_outputs(entry: &GraphEntry, exe: &Executable) -> Result<(), PjrtBackendError> {
    let specs = exe.outputs()?;
    let bad = |message: String| PjrtBackendError::Graph {
        graph: entry.name.clone(),
        message: format!("its HLO does not match its manifest entry: {message} (recompile the artifact)"),
    };
    if specs.len() != entry.outputs.len() {
        return Err(bad(format!("the program has {} outputs, the manifest {}", specs.len(), entry.outputs.len())));
    }
    for (s, o) in specs.iter().zip(&entry.outputs) {
        let dtype = entry_dtype(entry, o)?;
        if s.element_type != element_type(dtype) || s.dims != dims(&o.shape) {
            return Err(bad(format!(
                "output `{}` is {}{:?} in the manifest but element type {} with dims {:?} in the program",
                o.name, o.dtype, o.shape, s.element_type, s.dims
            )));
        }
    }
    Ok(())
}

/// Where each parameter comes from and each output goes.
fn plan(entry: &GraphEntry, exe: Executable) -> Result<Loaded, PjrtBackendError> {
    let state_params: HashMap<usize, String> = entry
        .outputs
        .iter()
        .filter_map(|o| o.aliases_parameter.map(|p| (p, entry.parameters[p].name.clone())))
        .collect();
    let mut slots = Vec::new();
    let mut donate = Vec::new();
    for (i, p) in entry.parameters.iter().enumerate() {
        slots.push(if p.kind == "weight" {
            Slot::Weight(p.model.clone().unwrap_or_else(|| entry.model.clone()), p.name.clone())
        } else if let Some(name) = state_params.get(&i) {
            donate.push(i);
            Slot::State(name.clone())
        } else if p.name == specc_ir::RANK_INPUT {
            Slot::Rank
        } else {
            Slot::Input { name: p.name.clone(), dtype: entry_dtype(entry, p)?, shape: p.shape.clone() }
        });
    }
    let mut outs = Vec::new();
    for o in &entry.outputs {
        outs.push(match o.aliases_parameter {
            Some(p) => Out::State(entry.parameters[p].name.clone()),
            None => Out::Host { name: o.name.clone(), dtype: entry_dtype(entry, o)?, shape: o.shape.clone() },
        });
    }
    Ok(Loaded { slots, outs, donate, exe })
}

/// The on-disk cache of compiled executables (when the plugin can
/// serialize them): `<key>.pjrt` files, the key a SHA-256 of the HLO, the
/// compile options and the plugin (its file, size and modification time,
/// API version, platform and version), so a second run skips compiling.
struct CacheDir {
    dir: Option<PathBuf>,
    plugin_key: String,
}

impl CacheDir {
    fn new(setting: &ExecutableCache, plugin: &Plugin, client: &Client) -> CacheDir {
        let dir = match setting {
            ExecutableCache::Off => None,
            ExecutableCache::Dir(d) => Some(d.clone()),
            ExecutableCache::Default => std::env::var_os("SPECC_PJRT_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("specc/pjrt")))
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/specc/pjrt"))),
        };
        let meta = std::fs::metadata(plugin.path()).ok();
        let plugin_key = format!(
            "{} {:?} {:?} {:?} {} {}",
            plugin.path().display(),
            meta.as_ref().map(|m| m.len()),
            meta.and_then(|m| m.modified().ok()),
            plugin.version(),
            client.platform(),
            client.platform_version()
        );
        CacheDir { dir, plugin_key }
    }

    fn path(&self, hlo: &[u8], options: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let key = specc_artifact::sha256_hex(
            format!("{}\n{}\n{:?}", specc_artifact::sha256_hex(hlo), self.plugin_key, options).as_bytes(),
        );
        Some(dir.join(format!("{key}.pjrt")))
    }

    /// The executable from the cache, else compiled (and then stored).
    /// Returns whether it came from the cache.
    fn load_or_compile(
        &self,
        client: &Client,
        entry: &GraphEntry,
        hlo: &[u8],
        replicas: usize,
    ) -> Result<(Executable, bool), PjrtBackendError> {
        let path = self.path(hlo, &compile_options(replicas));
        if let Some(p) = &path
            && let Ok(bytes) = std::fs::read(p)
            && let Ok(exe) = client.deserialize(&bytes)
        {
            return Ok((exe, true));
        }
        let exe = client.compile(hlo, replicas).map_err(|e| PjrtBackendError::Graph {
            graph: entry.name.clone(),
            message: format!("the plugin could not compile its HLO: {e}"),
        })?;
        if let Some(p) = path {
            // A cache that cannot be written costs the next run time, not
            // this one its executable.
            if let Ok(bytes) = exe.serialize()
                && !bytes.is_empty()
                && std::fs::create_dir_all(p.parent().unwrap_or(Path::new("."))).is_ok()
            {
                let tmp = p.with_extension(format!("tmp-{}", std::process::id()));
                if std::fs::write(&tmp, &bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, &p);
                }
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok((exe, false))
    }
}

impl Backend for Pjrt {
    fn name(&self) -> &'static str {
        "pjrt"
    }

    fn description(&self) -> String {
        let s = &self.stats;
        format!(
            "pjrt: {}; {} of {} graphs ready: {} compiled, {} from the executable cache, in {:.2} s",
            self.description,
            s.compiled + s.from_cache,
            s.graphs,
            s.compiled,
            s.from_cache,
            s.prepare_seconds
        )
    }

    fn load(&mut self, artifact: &Artifact) -> Result<(), BackendError> {
        let result = self.load_all(artifact);
        if result.is_err() {
            // Free what the failed load made now, in order, not at drop.
            self.graphs.clear();
            self.weights.clear();
            self.state.clear();
            self.ranks.clear();
            self.pending.clear();
            self.cache = None;
            self.client = None;
        }
        result
    }

    fn prepare(&mut self, graphs: &[String]) -> Result<(), BackendError> {
        self.prepare_graphs(graphs)
    }

    fn execute(&mut self, graph: &str, inputs: &[(&str, &Literal)]) -> Result<Vec<(String, Literal)>, BackendError> {
        if !self.graphs.contains_key(graph) {
            self.prepare_graphs(&[graph.to_string()])?;
        }
        let Pjrt { graphs, weights, state, ranks, client, stats, .. } = self;
        let g = graphs.get(graph).ok_or_else(|| BackendError::NoGraph(graph.into()))?;
        let client = client.as_ref().ok_or_else(|| BackendError::NoGraph(graph.into()))?;
        let err = |message: String| PjrtBackendError::Graph { graph: graph.into(), message };
        let devices = ranks.len().max(1);
        // Per-call inputs first (owned here for the call; the same values
        // on every device), then one argument list per device.
        let mut uploaded: Vec<Vec<Buffer>> = (0..devices).map(|_| Vec::new()).collect();
        for s in &g.slots {
            if let Slot::Input { name, dtype, shape } = s {
                let lit = inputs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, l)| *l)
                    .ok_or_else(|| err(format!("missing input `{name}`")))?;
                if lit.dtype() != *dtype || lit.shape != *shape {
                    return Err(err(format!(
                        "input `{name}` is {}, the graph takes {}{shape:?}",
                        lit.ty(),
                        dtype.name()
                    ))
                    .into());
                }
                let bytes = lit.to_le_bytes();
                for (d, up) in uploaded.iter_mut().enumerate() {
                    stats.bytes_to_device += bytes.len() as u64;
                    up.push(client.upload(&bytes, element_type(*dtype), &dims(shape), d)?);
                }
            }
        }
        let outputs = {
            let mut lists: Vec<Vec<&Buffer>> = Vec::with_capacity(devices);
            for (d, up) in uploaded.iter().enumerate() {
                let mut next_input = up.iter();
                let mut args: Vec<&Buffer> = Vec::with_capacity(g.slots.len());
                for s in &g.slots {
                    args.push(match s {
                        Slot::Input { .. } => next_input.next().expect("one upload per input"),
                        Slot::State(name) => state
                            .get(name)
                            .and_then(|b| b.get(d))
                            .ok_or_else(|| err(format!("no state `{name}` on device {d}")))?,
                        Slot::Weight(m, w) => weights
                            .get(&(m.clone(), w.clone()))
                            .and_then(|b| b.get(d))
                            .ok_or_else(|| err(format!("no weight `{w}` of model `{m}` on device {d}")))?,
                        Slot::Rank => ranks.get(d).ok_or_else(|| err(format!("no rank on device {d}")))?,
                    });
                }
                lists.push(args);
            }
            g.exe.execute(&lists, &g.donate, g.outs.len()).map_err(|e| err(e.to_string()))?
        };
        stats.executions += 1;
        drop(uploaded);
        if outputs.len() != devices {
            return Err(err(format!("the program returned outputs for {} of {devices} devices", outputs.len())).into());
        }
        let mut returned = Vec::new();
        for (d, device_outputs) in outputs.into_iter().enumerate() {
            for (o, b) in g.outs.iter().zip(device_outputs) {
                match o {
                    // The donated cache's handle is now deleted; the output
                    // (its memory, updated in place) takes its place.
                    Out::State(name) => {
                        let slot = state
                            .get_mut(name)
                            .and_then(|v| v.get_mut(d))
                            .ok_or_else(|| err(format!("no state `{name}` on device {d}")))?;
                        *slot = b;
                    }
                    // Every rank holds the same tokens and counts (what they
                    // are decided from is all-reduced): only device 0's
                    // cross to the host.
                    Out::Host { name, dtype, shape } if d == 0 => {
                        let bytes = b.download(dtype.size_bytes() * shape.iter().product::<usize>())?;
                        stats.bytes_to_host += bytes.len() as u64;
                        let lit = Literal::from_le_bytes(*dtype, shape.clone(), &bytes)
                            .map_err(|e| err(format!("output `{name}`: {e}")))?;
                        returned.push((name.clone(), lit));
                    }
                    Out::Host { .. } => {}
                }
            }
        }
        Ok(returned)
    }
}

/// The plugin for `--backend auto`, if one is installed: (path, how found).
pub fn available(options: &PjrtOptions) -> Option<(PathBuf, String)> {
    find_plugin(options.plugin.as_ref()).ok()
}
