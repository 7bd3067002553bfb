//! The slice of the Neuron runtime's C API (`nrt/nrt.h`,
//! `nrt/nrt_experimental.h`) that specc uses, opened at run time.
//!
//! Why dlopen and not a link-time dependency: libnrt is not on any public
//! registry, so a binary linked against it could not be built or tested
//! anywhere but a Neuron machine. Opening it at run time keeps one binary
//! that builds everywhere and says clearly, when the runtime is missing,
//! which package provides it.
//!
//! Every handle type here owns what it allocated and releases it on drop,
//! holding the runtime alive (`Arc<Runtime>`) until the last handle is
//! gone, so `nrt_close` always runs after every free, also on error paths.

use libloading::Library;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// `NRT_STATUS`: 0 is success.
pub type Status = c_int;

#[repr(C)]
pub struct RawModel {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct RawTensor {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct RawTensorSet {
    _opaque: [u8; 0],
}

/// `NRT_TENSOR_NAME_MAX` in `nrt_experimental.h`.
const TENSOR_NAME_MAX: usize = 256;

/// `nrt_tensor_info_t`. `dtype` is read as a plain int and never
/// interpreted: its enum values changed between runtime releases, and the
/// size in bytes is all the check needs.
#[repr(C)]
struct RawTensorInfo {
    name: [c_char; TENSOR_NAME_MAX],
    usage: c_int,
    size: usize,
    dtype: c_int,
    shape: *mut u32,
    ndim: u32,
}

/// `nrt_tensor_info_array_t`: a count followed by the entries.
#[repr(C)]
struct RawTensorInfoArray {
    tensor_count: u64,
    tensor_array: [RawTensorInfo; 0],
}

/// `NRT_FRAMEWORK_TYPE_NO_FW`: an application without a ML framework.
const FRAMEWORK_NO_FW: c_int = 1;
/// `NRT_TENSOR_PLACEMENT_DEVICE`: tensors live in the core's HBM.
const PLACEMENT_DEVICE: c_int = 0;
/// `NRT_TENSOR_USAGE_INPUT` (OUTPUT is 1).
const USAGE_INPUT: c_int = 0;

type FnInit = unsafe extern "C" fn(c_int, *const c_char, *const c_char) -> Status;
type FnClose = unsafe extern "C" fn();
type FnLoad = unsafe extern "C" fn(*const c_void, usize, i32, i32, *mut *mut RawModel) -> Status;
type FnUnload = unsafe extern "C" fn(*mut RawModel) -> Status;
/// `nrt_load_collectives(neff, size, start_nc, nc_count, g_device_id,
/// g_device_count, &model)`.
type FnLoadCollectives = unsafe extern "C" fn(*const c_void, usize, i32, i32, u32, u32, *mut *mut RawModel) -> Status;
type FnAllocateSet = unsafe extern "C" fn(*mut *mut RawTensorSet) -> Status;
type FnDestroySet = unsafe extern "C" fn(*mut *mut RawTensorSet);
type FnAddToSet = unsafe extern "C" fn(*mut RawTensorSet, *const c_char, *mut RawTensor) -> Status;
type FnExecute = unsafe extern "C" fn(*mut RawModel, *const RawTensorSet, *mut RawTensorSet) -> Status;
type FnTensorAllocate = unsafe extern "C" fn(c_int, c_int, usize, *const c_char, *mut *mut RawTensor) -> Status;
type FnTensorFree = unsafe extern "C" fn(*mut *mut RawTensor);
type FnTensorRead = unsafe extern "C" fn(*const RawTensor, *mut c_void, usize, usize) -> Status;
type FnTensorWrite = unsafe extern "C" fn(*mut RawTensor, *const c_void, usize, usize) -> Status;
type FnGetTensorInfo = unsafe extern "C" fn(*mut RawModel, *mut *mut RawTensorInfoArray) -> Status;
type FnFreeTensorInfo = unsafe extern "C" fn(*mut RawTensorInfoArray) -> Status;
type FnStatusAsStr = unsafe extern "C" fn(Status) -> *const c_char;

/// The functions specc calls, resolved once.
struct Functions {
    init: FnInit,
    close: FnClose,
    load: FnLoad,
    unload: FnUnload,
    allocate_set: FnAllocateSet,
    destroy_set: FnDestroySet,
    add_to_set: FnAddToSet,
    execute: FnExecute,
    tensor_allocate: FnTensorAllocate,
    tensor_free: FnTensorFree,
    tensor_read: FnTensorRead,
    tensor_write: FnTensorWrite,
    get_tensor_info: FnGetTensorInfo,
    free_tensor_info: FnFreeTensorInfo,
    /// Optional: some releases keep it out of the dynamic symbol table.
    status_as_str: Option<FnStatusAsStr>,
    /// Only tensor-parallel artifacts need it; asked for when one loads.
    load_collectives: Option<FnLoadCollectives>,
}

/// What went wrong talking to the runtime.
#[derive(Debug, thiserror::Error)]
pub enum NrtError {
    #[error(
        "the Neuron runtime (libnrt.so.1) could not be opened; tried {}: {detail}. \
         Install the aws-neuronx-runtime-lib package (Neuron apt/yum repository, on a Trn1/Trn2/Inf2 instance), \
         or point --libnrt or SPECC_LIBNRT at the library",
        .tried.join(", ")
    )]
    NotFound { tried: Vec<String>, detail: String },
    #[error("{library} has no symbol `{symbol}` (a libnrt older than specc needs?): {detail}")]
    MissingSymbol { library: String, symbol: &'static str, detail: String },
    #[error("{call} failed{}: {name} ({code}): {message}", if .context.is_empty() { String::new() } else { format!(" for {}", .context) })]
    Status { call: &'static str, code: Status, name: &'static str, message: String, context: String },
    #[error("{bytes} bytes at offset {offset} do not fit tensor `{tensor}` of {size} bytes")]
    OutOfBounds { tensor: String, offset: usize, bytes: usize, size: usize },
}

/// The name of an `NRT_STATUS` code (`nrt/nrt_status.h`).
pub fn status_name(code: Status) -> &'static str {
    match code {
        0 => "NRT_SUCCESS",
        1 => "NRT_FAILURE",
        2 => "NRT_INVALID",
        3 => "NRT_INVALID_HANDLE",
        4 => "NRT_RESOURCE",
        5 => "NRT_TIMEOUT",
        6 => "NRT_HW_ERROR",
        7 => "NRT_QUEUE_FULL",
        9 => "NRT_LOAD_NOT_ENOUGH_NC",
        10 => "NRT_UNSUPPORTED_NEFF_VERSION",
        11 => "NRT_FAIL_HOST_MEM_ALLOC",
        13 => "NRT_UNINITIALIZED",
        14 => "NRT_CLOSED",
        15 => "NRT_QUEUE_EMPTY",
        101 => "NRT_EXEC_UNIT_DISABLED",
        1002 => "NRT_EXEC_BAD_INPUT",
        1003 => "NRT_EXEC_COMPLETED_WITH_NUM_ERR",
        1004 => "NRT_EXEC_COMPLETED_WITH_ERR",
        1005 => "NRT_EXEC_NC_BUSY",
        1006 => "NRT_EXEC_OOB",
        1100 => "NRT_COLL_PENDING",
        1200 => "NRT_EXEC_HW_ERR_COLLECTIVES",
        1201 => "NRT_EXEC_HW_ERR_HBM_UE",
        1202 => "NRT_EXEC_HW_ERR_NC_UE",
        1203 => "NRT_EXEC_HW_ERR_DMA_ABORT",
        1204 => "NRT_EXEC_SW_NQ_OVERFLOW",
        1205 => "NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE",
        1206 => "NRT_NETWORK_PROXY_FAILURE",
        _ => "unknown NRT_STATUS",
    }
}

/// Where to look for libnrt, in order: the explicit path (`--libnrt`),
/// `$SPECC_LIBNRT`, the loader's search path, and the Neuron SDK's
/// install location.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("SPECC_LIBNRT") {
        return vec![PathBuf::from(p)];
    }
    vec![PathBuf::from("libnrt.so.1"), PathBuf::from("/opt/aws/neuron/lib/libnrt.so.1")]
}

/// The first of [`candidates`] that the loader can open, without
/// initializing the runtime (for `--backend auto`).
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    candidates(explicit).into_iter().find(|p| {
        // SAFETY: as in `Runtime::open`; the library is closed again at once.
        unsafe { Library::new(p.as_os_str()) }.is_ok()
    })
}

/// An initialized runtime: the library, its functions, and `nrt_init` done.
/// Dropping it calls `nrt_close` (after every handle, which hold an `Arc`).
pub struct Runtime {
    f: Functions,
    path: String,
    _lib: Library,
}

impl Runtime {
    /// Opens libnrt (see [`candidates`]) and calls `nrt_init` for a
    /// framework-less application.
    pub fn open(explicit: Option<&Path>) -> Result<Arc<Runtime>, NrtError> {
        let tried = candidates(explicit);
        let mut errors = Vec::new();
        for path in &tried {
            // SAFETY: loading a shared library runs its initializers; libnrt's
            // (and the test double's) are plain C constructors.
            match unsafe { Library::new(path.as_os_str()) } {
                Ok(lib) => return Runtime::init(lib, path.display().to_string()),
                // libloading's Display says only "dlopen failed"; Debug has dlerror's text.
                Err(e) => errors.push(format!("{}: {e:?}", path.display())),
            }
        }
        Err(NrtError::NotFound {
            tried: tried.iter().map(|p| p.display().to_string()).collect(),
            detail: errors.join("; "),
        })
    }

    fn init(lib: Library, path: String) -> Result<Arc<Runtime>, NrtError> {
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the type is the documented C signature of the symbol.
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| NrtError::MissingSymbol {
                    library: path.clone(),
                    symbol: $name,
                    detail: format!("{e:?}"),
                })?
            };
        }
        let f = Functions {
            init: sym!("nrt_init"),
            close: sym!("nrt_close"),
            load: sym!("nrt_load"),
            unload: sym!("nrt_unload"),
            allocate_set: sym!("nrt_allocate_tensor_set"),
            destroy_set: sym!("nrt_destroy_tensor_set"),
            add_to_set: sym!("nrt_add_tensor_to_tensor_set"),
            execute: sym!("nrt_execute"),
            tensor_allocate: sym!("nrt_tensor_allocate"),
            tensor_free: sym!("nrt_tensor_free"),
            tensor_read: sym!("nrt_tensor_read"),
            tensor_write: sym!("nrt_tensor_write"),
            get_tensor_info: sym!("nrt_get_model_tensor_info"),
            free_tensor_info: sym!("nrt_free_model_tensor_info"),
            // SAFETY: as above.
            status_as_str: unsafe { lib.get::<FnStatusAsStr>(b"nrt_get_status_as_str\0") }.ok().map(|s| *s),
            // SAFETY: as above.
            load_collectives: unsafe { lib.get::<FnLoadCollectives>(b"nrt_load_collectives\0") }.ok().map(|s| *s),
        };
        let empty = c"";
        // SAFETY: documented call; the strings outlive it.
        let code = unsafe { (f.init)(FRAMEWORK_NO_FW, empty.as_ptr(), empty.as_ptr()) };
        if code != 0 {
            // Not initialized, so no Runtime (whose drop would call nrt_close).
            return Err(describe(&f, "nrt_init", code, format!("libnrt at {path}")));
        }
        Ok(Arc::new(Runtime { f, path, _lib: lib }))
    }

    /// The library's path, for reports.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn check(&self, call: &'static str, code: Status, context: impl FnOnce() -> String) -> Result<(), NrtError> {
        if code == 0 { Ok(()) } else { Err(describe(&self.f, call, code, context())) }
    }
}

/// The typed error for a non-zero status, with the runtime's own words.
fn describe(f: &Functions, call: &'static str, code: Status, context: String) -> NrtError {
    let message = f
        .status_as_str
        // SAFETY: returns a static C string (or null).
        .map(|s| unsafe { s(code) })
        .filter(|p| !p.is_null())
        // SAFETY: non-null, NUL-terminated, static.
        .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        .unwrap_or_else(|| "no description (this libnrt has no nrt_get_status_as_str)".into());
    NrtError::Status { call, code, name: status_name(code), message, context }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: every handle holds an Arc<Runtime>, so none is left.
        unsafe { (self.f.close)() }
    }
}

fn c_name(s: &str) -> CString {
    // Names come from the manifest; an interior NUL would be a corrupt one.
    CString::new(s.replace('\0', "?")).expect("no NUL left")
}

/// A tensor allocated on a NeuronCore; freed on drop.
pub struct Tensor {
    rt: Arc<Runtime>,
    raw: *mut RawTensor,
    size: usize,
    name: String,
}

impl Tensor {
    /// `nrt_tensor_allocate` on the device memory of core `nc`.
    pub fn allocate(rt: &Arc<Runtime>, nc: i32, size: usize, name: &str) -> Result<Tensor, NrtError> {
        let mut raw = std::ptr::null_mut();
        let cname = c_name(name);
        // SAFETY: documented call; `raw` receives the handle.
        let code = unsafe { (rt.f.tensor_allocate)(PLACEMENT_DEVICE, nc, size, cname.as_ptr(), &mut raw) };
        rt.check("nrt_tensor_allocate", code, || format!("tensor `{name}` ({size} bytes) on NeuronCore {nc}"))?;
        Ok(Tensor { rt: rt.clone(), raw, size, name: name.to_string() })
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Writes `bytes` at `offset`.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), NrtError> {
        // Checked here rather than trusted to the runtime: a write past the
        // tensor would corrupt device memory that belongs to another.
        if offset.checked_add(bytes.len()).is_none_or(|end| end > self.size) {
            return Err(NrtError::OutOfBounds {
                tensor: self.name.clone(),
                offset,
                bytes: bytes.len(),
                size: self.size,
            });
        }
        // SAFETY: live handle; `bytes` is a valid slice and the range lies
        // inside the tensor (checked above).
        let code = unsafe { (self.rt.f.tensor_write)(self.raw, bytes.as_ptr().cast(), offset, bytes.len()) };
        self.rt
            .check("nrt_tensor_write", code, || format!("tensor `{}` ({} bytes at {offset})", self.name, bytes.len()))
    }

    /// Fills the tensor with zero bytes, in bounded chunks.
    pub fn zero(&self) -> Result<(), NrtError> {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(self.size)];
        let mut at = 0;
        while at < self.size {
            let n = CHUNK.min(self.size - at);
            self.write(at, &zeros[..n])?;
            at += n;
        }
        Ok(())
    }

    /// Reads the whole tensor.
    pub fn read(&self) -> Result<Vec<u8>, NrtError> {
        let mut buf = vec![0u8; self.size];
        // SAFETY: live handle; `buf` has `size` bytes.
        let code = unsafe { (self.rt.f.tensor_read)(self.raw, buf.as_mut_ptr().cast(), 0, self.size) };
        self.rt.check("nrt_tensor_read", code, || format!("tensor `{}` ({} bytes)", self.name, self.size))?;
        Ok(buf)
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: allocated by nrt_tensor_allocate, freed exactly once here.
        unsafe { (self.rt.f.tensor_free)(&mut self.raw) }
    }
}

/// A set of named tensors for one `nrt_execute` side; destroyed on drop
/// (which does not free the tensors: their owners do, after the set).
pub struct TensorSet {
    rt: Arc<Runtime>,
    raw: *mut RawTensorSet,
    /// The tensors bound, kept alive at least as long as the set.
    bound: Vec<Rc<Tensor>>,
}

impl TensorSet {
    pub fn new(rt: &Arc<Runtime>, what: &str) -> Result<TensorSet, NrtError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: documented call.
        let code = unsafe { (rt.f.allocate_set)(&mut raw) };
        rt.check("nrt_allocate_tensor_set", code, || what.to_string())?;
        Ok(TensorSet { rt: rt.clone(), raw, bound: Vec::new() })
    }

    /// Binds `tensor` under the NEFF tensor name `name`.
    pub fn add(&mut self, name: &str, tensor: &Rc<Tensor>) -> Result<(), NrtError> {
        let cname = c_name(name);
        // SAFETY: live set and tensor; the tensor outlives the set (kept in `bound`).
        let code = unsafe { (self.rt.f.add_to_set)(self.raw, cname.as_ptr(), tensor.raw) };
        self.rt.check("nrt_add_tensor_to_tensor_set", code, || format!("`{name}` <- tensor `{}`", tensor.name))?;
        self.bound.push(tensor.clone());
        Ok(())
    }
}

impl Drop for TensorSet {
    fn drop(&mut self) {
        // SAFETY: allocated by nrt_allocate_tensor_set, destroyed once, before
        // the tensors in `bound` can be freed (fields drop after this body).
        unsafe { (self.rt.f.destroy_set)(&mut self.raw) }
    }
}

/// One tensor of a loaded NEFF, as the runtime lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub input: bool,
    pub size: usize,
}

/// A NEFF loaded on a NeuronCore; unloaded on drop.
pub struct Model {
    rt: Arc<Runtime>,
    raw: *mut RawModel,
    name: String,
}

impl Model {
    /// `nrt_load` of `neff` on core `nc` (one core: specc's graphs hold no
    /// collectives, so one instance on the chosen core is what is wanted).
    pub fn load(rt: &Arc<Runtime>, neff: &[u8], nc: i32, name: &str) -> Result<Model, NrtError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: documented call; the runtime copies what it needs from `neff`.
        let code = unsafe { (rt.f.load)(neff.as_ptr().cast(), neff.len(), nc, 1, &mut raw) };
        rt.check("nrt_load", code, || format!("graph `{name}` ({} bytes of NEFF) on NeuronCore {nc}", neff.len()))?;
        Ok(Model { rt: rt.clone(), raw, name: name.to_string() })
    }

    /// `nrt_load_collectives` of `neff` on core `nc` as rank `rank` of
    /// `ranks`: the runtime joins this copy's collectives with the other
    /// ranks' copies (the communicator comes from
    /// `NEURON_RT_ROOT_COMM_ID`).
    pub fn load_rank(
        rt: &Arc<Runtime>,
        neff: &[u8],
        nc: i32,
        rank: usize,
        ranks: usize,
        name: &str,
    ) -> Result<Model, NrtError> {
        let load = rt.f.load_collectives.ok_or_else(|| NrtError::MissingSymbol {
            library: rt.path.clone(),
            symbol: "nrt_load_collectives",
            detail: "a tensor-parallel artifact needs it (Neuron runtime 2.x)".into(),
        })?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: documented call (nc_count -1: deprecated, the runtime's
        // default); the runtime copies what it needs from `neff`.
        let code = unsafe { load(neff.as_ptr().cast(), neff.len(), nc, -1, rank as u32, ranks as u32, &mut raw) };
        rt.check("nrt_load_collectives", code, || {
            format!("graph `{name}` ({} bytes of NEFF) on NeuronCore {nc} as rank {rank} of {ranks}", neff.len())
        })?;
        Ok(Model { rt: rt.clone(), raw, name: name.to_string() })
    }

    /// The NEFF's tensors (`nrt_get_model_tensor_info`), in the runtime's order.
    pub fn tensors(&self) -> Result<Vec<TensorInfo>, NrtError> {
        let mut arr = std::ptr::null_mut();
        // SAFETY: documented call.
        let code = unsafe { (self.rt.f.get_tensor_info)(self.raw, &mut arr) };
        self.rt.check("nrt_get_model_tensor_info", code, || format!("graph `{}`", self.name))?;
        if arr.is_null() {
            return Err(NrtError::Status {
                call: "nrt_get_model_tensor_info",
                code,
                name: status_name(code),
                message: "returned success but no tensor list".into(),
                context: format!("graph `{}`", self.name),
            });
        }
        // SAFETY: on success `arr` points at `tensor_count` entries.
        let out = unsafe {
            let n = (*arr).tensor_count as usize;
            let first = std::ptr::addr_of!((*arr).tensor_array).cast::<RawTensorInfo>();
            (0..n)
                .map(|i| {
                    let t = &*first.add(i);
                    // The name is a fixed array: read it up to its first
                    // NUL, never past its end (a runtime that filled all
                    // 256 bytes would otherwise be read beyond).
                    let name: &[u8] = std::slice::from_raw_parts(t.name.as_ptr().cast(), TENSOR_NAME_MAX);
                    let name = CStr::from_bytes_until_nul(name)
                        .map(|c| c.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| String::from_utf8_lossy(name).into_owned());
                    TensorInfo { name, input: t.usage == USAGE_INPUT, size: t.size }
                })
                .collect()
        };
        // SAFETY: frees what nrt_get_model_tensor_info allocated, once.
        let code = unsafe { (self.rt.f.free_tensor_info)(arr) };
        self.rt.check("nrt_free_model_tensor_info", code, || format!("graph `{}`", self.name))?;
        Ok(out)
    }

    /// `nrt_execute` with the two bound sets.
    pub fn execute(&self, inputs: &TensorSet, outputs: &mut TensorSet) -> Result<(), NrtError> {
        // SAFETY: live model and sets whose tensors are alive (held in `bound`).
        let code = unsafe { (self.rt.f.execute)(self.raw, inputs.raw, outputs.raw) };
        self.rt.check("nrt_execute", code, || format!("graph `{}`", self.name))
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: loaded by nrt_load, unloaded once. A failing unload at
        // teardown has nobody to report to; the runtime logs it.
        let _ = unsafe { (self.rt.f.unload)(self.raw) };
    }
}
