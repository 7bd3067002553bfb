//! Owning Rust types over the PJRT handles specc uses: the plugin (its
//! library and function table), a client, loaded executables, device
//! buffers and events. Each handle is destroyed exactly once, in `Drop`,
//! on every path; every `PJRT_Error` becomes a [`PjrtError`] carrying the
//! call and the plugin's own message (and is destroyed).

use super::sys::{self, slot};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PjrtError {
    #[error("the PJRT plugin {path} could not be opened: {detail}")]
    Open { path: String, detail: String },
    #[error("{path} is not a PJRT plugin: it has no GetPjrtApi ({detail})")]
    NotAPlugin { path: String, detail: String },
    #[error(
        "the PJRT plugin {path} implements PJRT C API {major}.{minor}; specc needs 0.{min} or newer (install a newer plugin wheel)",
        min = sys::MIN_MINOR
    )]
    TooOld { path: String, major: i32, minor: i32 },
    #[error(
        "the PJRT plugin {path} implements PJRT C API {major}.{minor}, another major version than the 0.x specc speaks (its function table and structs may differ); use a plugin of API 0.{min} or newer within 0.x",
        min = sys::MIN_MINOR
    )]
    OtherMajor { path: String, major: i32, minor: i32 },
    #[error(
        "the PJRT plugin {path} has a function table of {size} bytes, too short for the functions specc calls ({need} bytes)"
    )]
    ShortTable { path: String, size: usize, need: usize },
    #[error("{call} failed ({code}): {message}")]
    Call { call: &'static str, code: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// An opened plugin: its function table. The library stays loaded for the
/// rest of the process (see [`Plugin::open`]).
pub struct Plugin {
    api: *const sys::PJRT_Api,
    path: PathBuf,
    version: (i32, i32),
}

/// Plugins opened so far, by canonical path: each is opened and initialized
/// once per process, however many clients use it.
static OPENED: std::sync::Mutex<Vec<(PathBuf, Arc<Plugin>)>> = std::sync::Mutex::new(Vec::new());

// SAFETY: the function table is immutable static data of the plugin, and
// PJRT's C API is thread-safe for the functions specc calls.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl Plugin {
    /// Opens the plugin at `path`, checks its API version and table size,
    /// and initializes it; a plugin already open is shared.
    ///
    /// A library, once loaded, is never unloaded: XLA's plugins register
    /// process-exit handlers and thread-local destructors, and a `dlclose`
    /// leaves them pointing at unmapped code (measured: a segfault at exit).
    pub fn open(path: &Path) -> Result<Arc<Plugin>, PjrtError> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = opened.iter().find(|(k, _)| *k == key) {
            return Ok(p.clone());
        }
        let plugin = Plugin::load(path)?;
        opened.push((key, plugin.clone()));
        Ok(plugin)
    }

    fn load(path: &Path) -> Result<Arc<Plugin>, PjrtError> {
        let shown = path.display().to_string();
        // XLA logs informational lines to stderr ("cpu_device_count set via
        // create_options") that read as noise in specc's output; its own
        // switch keeps warnings and errors. A value the user set is kept.
        if std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none() {
            // SAFETY: set before the plugin is loaded, so none of its threads
            // exist yet to read the environment; Rust's own readers lock.
            unsafe { std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "1") };
        }
        // SAFETY: loading a shared library runs its initializers; PJRT
        // plugins are ordinary C++ libraries.
        let lib = unsafe { Library::new(path.as_os_str()) }
            .map_err(|e| PjrtError::Open { path: shown.clone(), detail: dl_detail(&e) })?;
        // Kept loaded whatever happens next (see `open`).
        let lib = std::mem::ManuallyDrop::new(lib);
        type GetApi = unsafe extern "C" fn() -> *const sys::PJRT_Api;
        // SAFETY: `GetPjrtApi` is the plugin's documented entry point.
        let get: GetApi = *unsafe { lib.get::<GetApi>(b"GetPjrtApi\0") }
            .map_err(|e| PjrtError::NotAPlugin { path: shown.clone(), detail: dl_detail(&e) })?;
        // SAFETY: returns a pointer to the plugin's static function table.
        let api = unsafe { get() };
        if api.is_null() {
            return Err(PjrtError::NotAPlugin { path: shown, detail: "GetPjrtApi returned null".into() });
        }
        // SAFETY: non-null, and every table starts with these fields.
        let (size, major, minor) = unsafe {
            ((*api).struct_size, (*api).pjrt_api_version.major_version, (*api).pjrt_api_version.minor_version)
        };
        if major != 0 {
            return Err(PjrtError::OtherMajor { path: shown, major, minor });
        }
        if minor < sys::MIN_MINOR {
            return Err(PjrtError::TooOld { path: shown, major, minor });
        }
        let need = sys::FN_TABLE_OFFSET + (slot::LAST + 1) * std::mem::size_of::<usize>();
        if size < need {
            return Err(PjrtError::ShortTable { path: shown, size, need });
        }
        let plugin = Plugin { api, path: path.to_path_buf(), version: (major, minor) };
        let mut args = sys::PJRT_Plugin_Initialize_Args::new();
        plugin.call("PJRT_Plugin_Initialize", slot::PLUGIN_INITIALIZE, &mut args)?;
        Ok(Arc::new(plugin))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// (major, minor) of the plugin's PJRT C API.
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// The function at `slot` (checked against the table size at open).
    fn function(&self, slot: usize) -> Option<sys::Fn> {
        // SAFETY: slot <= slot::LAST, and the table was checked to reach it;
        // a null entry is None.
        unsafe {
            let p = (self.api as *const u8).add(sys::FN_TABLE_OFFSET + slot * std::mem::size_of::<usize>())
                as *const Option<sys::Fn>;
            *p
        }
    }

    fn void_function(&self, slot: usize) -> Option<sys::VoidFn> {
        // SAFETY: as `function`; these two slots hold void functions.
        unsafe {
            let p = (self.api as *const u8).add(sys::FN_TABLE_OFFSET + slot * std::mem::size_of::<usize>())
                as *const Option<sys::VoidFn>;
            *p
        }
    }

    /// Calls the function at `slot` with `args`; a returned error becomes
    /// `PjrtError::Call` (and is destroyed).
    pub(crate) fn call<A>(&self, name: &'static str, slot: usize, args: &mut A) -> Result<(), PjrtError> {
        let f = self.function(slot).ok_or_else(|| PjrtError::Call {
            call: name,
            code: "UNIMPLEMENTED",
            message: "this plugin does not provide it".into(),
        })?;
        // SAFETY: `args` is the argument struct of this function, with its
        // struct_size set by `new()`.
        let err = unsafe { f(args as *mut A as *mut c_void) };
        if err.is_null() { Ok(()) } else { Err(self.take_error(name, err)) }
    }

    /// The message and code of `err`, which is then destroyed.
    fn take_error(&self, call: &'static str, err: *mut sys::PJRT_Error) -> PjrtError {
        let mut m = sys::PJRT_Error_Message_Args::new();
        m.error = err;
        let mut message = String::from("(no message)");
        if let Some(f) = self.void_function(slot::ERROR_MESSAGE) {
            // SAFETY: `err` is a live error; the message lives as long as it.
            unsafe { f(&mut m as *mut _ as *mut c_void) };
            if !m.message.is_null() {
                // SAFETY: `message_size` bytes at `message`, alive until destroy.
                let bytes = unsafe { std::slice::from_raw_parts(m.message as *const u8, m.message_size) };
                message = specc_ir::contain::brief(String::from_utf8_lossy(bytes));
            }
        }
        let mut c = sys::PJRT_Error_GetCode_Args::new();
        c.error = err;
        let code = match self.function(slot::ERROR_GET_CODE) {
            // SAFETY: as above; GetCode itself returns no new error in practice,
            // and one it did return is ignored (destroyed below).
            Some(f) => {
                let e2 = unsafe { f(&mut c as *mut _ as *mut c_void) };
                self.destroy_error(e2);
                sys::error_code_name(c.code)
            }
            None => "unknown code",
        };
        self.destroy_error(err);
        PjrtError::Call { call, code, message }
    }

    fn destroy_error(&self, err: *mut sys::PJRT_Error) {
        if err.is_null() {
            return;
        }
        if let Some(f) = self.void_function(slot::ERROR_DESTROY) {
            let mut d = sys::PJRT_Error_Destroy_Args::new();
            d.error = err;
            // SAFETY: a live error, destroyed once.
            unsafe { f(&mut d as *mut _ as *mut c_void) };
        }
    }
}

/// A string the plugin returned as (pointer, length).
fn plugin_string(p: *const c_char, n: usize) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the plugin documents `n` bytes at `p`, alive with their owner.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p as *const u8, n) }).into_owned()
}

/// A PJRT client: the devices of one plugin.
pub struct Client {
    plugin: Arc<Plugin>,
    raw: *mut sys::PJRT_Client,
    devices: Vec<*mut sys::PJRT_Device>,
}

// SAFETY: PJRT clients, executables and buffers are thread-safe objects
// (frameworks compile and execute on one client from many threads); specc
// compiles graphs on several threads and destroys each handle once.
unsafe impl Send for Client {}
unsafe impl Sync for Client {}
unsafe impl Send for Executable {}
unsafe impl Sync for Executable {}
unsafe impl Send for Buffer {}

impl Client {
    /// Creates a client; `int_options` are the plugin's create options
    /// (for the CPU plugin, `cpu_device_count`).
    pub fn create(plugin: &Arc<Plugin>, int_options: &[(&str, i64)]) -> Result<Client, PjrtError> {
        let options: Vec<sys::PJRT_NamedValue> = int_options
            .iter()
            .map(|(name, v)| {
                let mut o = sys::PJRT_NamedValue::new();
                o.name = name.as_ptr() as *const c_char;
                o.name_size = name.len();
                o.kind = sys::NAMED_VALUE_INT64;
                o.value = *v;
                o.value_size = 1;
                o
            })
            .collect();
        let mut a = sys::PJRT_Client_Create_Args::new();
        a.create_options = options.as_ptr();
        a.num_options = options.len();
        plugin.call("PJRT_Client_Create", slot::CLIENT_CREATE, &mut a)?;
        let mut client = Client { plugin: plugin.clone(), raw: a.client, devices: vec![] };
        let mut d = sys::PJRT_Client_AddressableDevices_Args::new();
        d.client = client.raw;
        plugin.call("PJRT_Client_AddressableDevices", slot::CLIENT_ADDRESSABLE_DEVICES, &mut d)?;
        if d.num_addressable_devices > 0 && !d.addressable_devices.is_null() {
            // SAFETY: `num_addressable_devices` entries, owned by the client.
            client.devices =
                unsafe { std::slice::from_raw_parts(d.addressable_devices, d.num_addressable_devices) }.to_vec();
        }
        if client.devices.is_empty() {
            return Err(PjrtError::Invalid("the PJRT client has no addressable device".into()));
        }
        Ok(client)
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// `cpu`, `cuda`, ... as the plugin names its platform.
    pub fn platform(&self) -> String {
        let mut a = sys::PJRT_Client_PlatformName_Args::new();
        a.client = self.raw;
        match self.plugin.call("PJRT_Client_PlatformName", slot::CLIENT_PLATFORM_NAME, &mut a) {
            Ok(()) => plugin_string(a.platform_name, a.platform_name_size),
            Err(_) => "unknown".into(),
        }
    }

    pub fn platform_version(&self) -> String {
        let mut a = sys::PJRT_Client_PlatformVersion_Args::new();
        a.client = self.raw;
        match self.plugin.call("PJRT_Client_PlatformVersion", slot::CLIENT_PLATFORM_VERSION, &mut a) {
            Ok(()) => plugin_string(a.platform_version, a.platform_version_size),
            Err(_) => String::new(),
        }
    }

    /// Compiles a serialized `HloModuleProto` for `replicas` devices.
    pub fn compile(&self, hlo: &[u8], replicas: usize) -> Result<Executable, PjrtError> {
        let options = compile_options(replicas);
        let format = "hlo";
        let mut program = sys::PJRT_Program::new();
        program.code = hlo.as_ptr() as *mut c_char;
        program.code_size = hlo.len();
        program.format = format.as_ptr() as *const c_char;
        program.format_size = format.len();
        let mut a = sys::PJRT_Client_Compile_Args::new();
        a.client = self.raw;
        a.program = &program;
        a.compile_options = options.as_ptr() as *const c_char;
        a.compile_options_size = options.len();
        self.plugin.call("PJRT_Client_Compile", slot::CLIENT_COMPILE, &mut a)?;
        Ok(Executable { plugin: self.plugin.clone(), raw: a.executable })
    }

    /// Loads an executable serialized by [`Executable::serialize`].
    pub fn deserialize(&self, bytes: &[u8]) -> Result<Executable, PjrtError> {
        let mut a = sys::PJRT_Executable_DeserializeAndLoad_Args::new();
        a.client = self.raw;
        a.serialized_executable = bytes.as_ptr() as *const c_char;
        a.serialized_executable_size = bytes.len();
        self.plugin.call("PJRT_Executable_DeserializeAndLoad", slot::EXECUTABLE_DESERIALIZE_AND_LOAD, &mut a)?;
        Ok(Executable { plugin: self.plugin.clone(), raw: a.loaded_executable })
    }

    /// A device buffer holding `bytes` (little-endian, row-major) of
    /// `element_type` and `dims`, on device `device`.
    pub fn upload(&self, bytes: &[u8], element_type: c_int, dims: &[i64], device: usize) -> Result<Buffer, PjrtError> {
        let dev = *self.devices.get(device).ok_or_else(|| PjrtError::Invalid(format!("no device {device}")))?;
        let mut a = sys::PJRT_Client_BufferFromHostBuffer_Args::new();
        a.client = self.raw;
        a.data = bytes.as_ptr() as *const c_void;
        a.kind = element_type;
        a.dims = dims.as_ptr();
        a.num_dims = dims.len();
        a.host_buffer_semantics = sys::HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL;
        a.device = dev;
        self.plugin.call("PJRT_Client_BufferFromHostBuffer", slot::CLIENT_BUFFER_FROM_HOST_BUFFER, &mut a)?;
        let buffer = Buffer { plugin: self.plugin.clone(), raw: a.buffer };
        // The data was copied during the call; the event only says so.
        Event::adopt(&self.plugin, a.done_with_host_buffer).wait("PJRT_Client_BufferFromHostBuffer")?;
        Ok(buffer)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut a = sys::PJRT_Client_Destroy_Args::new();
        a.client = self.raw;
        // Teardown: nobody to report a failure to.
        let _ = self.plugin.call("PJRT_Client_Destroy", slot::CLIENT_DESTROY, &mut a);
    }
}

/// A serialized `xla.CompileOptionsProto` for `replicas` devices, one
/// partition: field 3 (executable_build_options) holding 4 (num_replicas)
/// and 5 (num_partitions). Never empty: an empty one aborts the CPU plugin
/// (CHECK replica_count > 0).
pub fn compile_options(replicas: usize) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut build = vec![0x20];
    varint(replicas.max(1) as u64, &mut build);
    build.extend([0x28, 0x01]);
    let mut out = vec![0x1a];
    varint(build.len() as u64, &mut out);
    out.extend(build);
    out
}

/// A completion event; destroyed on drop.
struct Event {
    plugin: Arc<Plugin>,
    raw: *mut sys::PJRT_Event,
}

impl Event {
    fn adopt(plugin: &Arc<Plugin>, raw: *mut sys::PJRT_Event) -> Event {
        Event { plugin: plugin.clone(), raw }
    }

    /// Waits for it (a null event is already done).
    fn wait(self, what: &'static str) -> Result<(), PjrtError> {
        if self.raw.is_null() {
            return Ok(());
        }
        let mut a = sys::PJRT_Event_Await_Args::new();
        a.event = self.raw;
        self.plugin.call("PJRT_Event_Await", slot::EVENT_AWAIT, &mut a).map_err(|e| match e {
            PjrtError::Call { code, message, .. } => PjrtError::Call { call: what, code, message },
            other => other,
        })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        let mut a = sys::PJRT_Event_Destroy_Args::new();
        a.event = self.raw;
        let _ = self.plugin.call("PJRT_Event_Destroy", slot::EVENT_DESTROY, &mut a);
    }
}

/// A buffer on a device; destroyed on drop.
pub struct Buffer {
    plugin: Arc<Plugin>,
    raw: *mut sys::PJRT_Buffer,
}

impl Buffer {
    /// Copies the buffer to the host: `bytes` bytes.
    pub fn download(&self, bytes: usize) -> Result<Vec<u8>, PjrtError> {
        let mut out = vec![0u8; bytes];
        let mut a = sys::PJRT_Buffer_ToHostBuffer_Args::new();
        a.src = self.raw;
        a.dst = out.as_mut_ptr() as *mut c_void;
        a.dst_size = out.len();
        self.plugin.call("PJRT_Buffer_ToHostBuffer", slot::BUFFER_TO_HOST_BUFFER, &mut a)?;
        Event::adopt(&self.plugin, a.event).wait("PJRT_Buffer_ToHostBuffer")?;
        Ok(out)
    }

    /// The device address of its data (to check donation in tests).
    pub fn address(&self) -> Result<usize, PjrtError> {
        let mut a = sys::PJRT_Buffer_UnsafePointer_Args::new();
        a.buffer = self.raw;
        self.plugin.call("PJRT_Buffer_UnsafePointer", slot::BUFFER_UNSAFE_POINTER, &mut a)?;
        Ok(a.buffer_pointer)
    }

    /// Whether it was donated to an execution (and so no longer usable).
    pub fn is_deleted(&self) -> Result<bool, PjrtError> {
        let mut a = sys::PJRT_Buffer_IsDeleted_Args::new();
        a.buffer = self.raw;
        self.plugin.call("PJRT_Buffer_IsDeleted", slot::BUFFER_IS_DELETED, &mut a)?;
        Ok(a.is_deleted)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut a = sys::PJRT_Buffer_Destroy_Args::new();
        a.buffer = self.raw;
        let _ = self.plugin.call("PJRT_Buffer_Destroy", slot::BUFFER_DESTROY, &mut a);
    }
}

/// A compiled, loaded program; destroyed on drop.
pub struct Executable {
    plugin: Arc<Plugin>,
    raw: *mut sys::PJRT_LoadedExecutable,
}

/// The output types and shapes a compiled program declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub element_type: c_int,
    pub dims: Vec<i64>,
}

impl Executable {
    /// Its (unloaded) executable, for queries; destroyed when dropped.
    fn with_executable<T>(
        &self,
        f: impl FnOnce(*mut sys::PJRT_Executable) -> Result<T, PjrtError>,
    ) -> Result<T, PjrtError> {
        struct Unloaded<'a>(&'a Plugin, *mut sys::PJRT_Executable);
        impl Drop for Unloaded<'_> {
            fn drop(&mut self) {
                let mut a = sys::PJRT_Executable_Destroy_Args::new();
                a.executable = self.1;
                let _ = self.0.call("PJRT_Executable_Destroy", slot::EXECUTABLE_DESTROY, &mut a);
            }
        }
        let mut a = sys::PJRT_LoadedExecutable_GetExecutable_Args::new();
        a.loaded_executable = self.raw;
        self.plugin.call("PJRT_LoadedExecutable_GetExecutable", slot::LOADED_EXECUTABLE_GET_EXECUTABLE, &mut a)?;
        let unloaded = Unloaded(&self.plugin, a.executable);
        f(unloaded.1)
    }

    /// What each output is (from the compiled program, not the manifest).
    pub fn outputs(&self) -> Result<Vec<OutputSpec>, PjrtError> {
        self.with_executable(|exe| {
            let mut n = sys::PJRT_Executable_NumOutputs_Args::new();
            n.executable = exe;
            self.plugin.call("PJRT_Executable_NumOutputs", slot::EXECUTABLE_NUM_OUTPUTS, &mut n)?;
            let mut t = sys::PJRT_Executable_OutputElementTypes_Args::new();
            t.executable = exe;
            self.plugin.call("PJRT_Executable_OutputElementTypes", slot::EXECUTABLE_OUTPUT_ELEMENT_TYPES, &mut t)?;
            let mut d = sys::PJRT_Executable_OutputDimensions_Args::new();
            d.executable = exe;
            self.plugin.call("PJRT_Executable_OutputDimensions", slot::EXECUTABLE_OUTPUT_DIMENSIONS, &mut d)?;
            if t.num_output_types != n.num_outputs || d.num_outputs != n.num_outputs {
                return Err(PjrtError::Invalid(format!(
                    "the plugin reports {} outputs, {} output types and {} output shapes",
                    n.num_outputs, t.num_output_types, d.num_outputs
                )));
            }
            // SAFETY: arrays of the reported lengths, owned by the executable.
            let (types, sizes) = unsafe {
                (
                    std::slice::from_raw_parts(t.output_types, t.num_output_types),
                    std::slice::from_raw_parts(d.dim_sizes, d.num_outputs),
                )
            };
            let total: usize = sizes.iter().sum();
            // SAFETY: the concatenated dims of every output.
            let dims = unsafe { std::slice::from_raw_parts(d.dims, total) };
            let mut at = 0;
            Ok(types
                .iter()
                .zip(sizes)
                .map(|(&element_type, &n)| {
                    let spec = OutputSpec { element_type, dims: dims[at..at + n].to_vec() };
                    at += n;
                    spec
                })
                .collect())
        })
    }

    /// The compiled program as bytes a later [`Client::deserialize`] loads
    /// (an error when the plugin cannot serialize).
    pub fn serialize(&self) -> Result<Vec<u8>, PjrtError> {
        self.with_executable(|exe| {
            let mut a = sys::PJRT_Executable_Serialize_Args::new();
            a.executable = exe;
            self.plugin.call("PJRT_Executable_Serialize", slot::EXECUTABLE_SERIALIZE, &mut a)?;
            let out = if a.serialized_bytes.is_null() {
                vec![]
            } else {
                // SAFETY: `serialized_bytes_size` bytes, alive until the deleter runs.
                unsafe { std::slice::from_raw_parts(a.serialized_bytes as *const u8, a.serialized_bytes_size) }.to_vec()
            };
            if let Some(deleter) = a.serialized_executable_deleter {
                // SAFETY: frees what Serialize allocated, once.
                unsafe { deleter(a.serialized_executable) };
            }
            Ok(out)
        })
    }

    /// Runs on `args.len()` devices at once (`args[d]`: device d's
    /// arguments, in parameter order). The parameters in `donate` give their
    /// buffers to aliased outputs (the buffer handles then report deleted);
    /// every other parameter is kept. Returns each device's outputs.
    pub fn execute(
        &self,
        args: &[Vec<&Buffer>],
        donate: &[usize],
        outputs: usize,
    ) -> Result<Vec<Vec<Buffer>>, PjrtError> {
        let n_args = args.first().map(Vec::len).unwrap_or(0);
        if args.iter().any(|a| a.len() != n_args) {
            return Err(PjrtError::Invalid("every device needs the same number of arguments".into()));
        }
        let lists: Vec<Vec<*mut sys::PJRT_Buffer>> = args.iter().map(|a| a.iter().map(|b| b.raw).collect()).collect();
        let list_ptrs: Vec<*const *mut sys::PJRT_Buffer> = lists.iter().map(|l| l.as_ptr()).collect();
        let keep: Vec<i64> = (0..n_args).filter(|i| !donate.contains(i)).map(|i| i as i64).collect();
        let mut out_raw: Vec<Vec<*mut sys::PJRT_Buffer>> = vec![vec![std::ptr::null_mut(); outputs]; args.len()];
        let out_ptrs: Vec<*mut *mut sys::PJRT_Buffer> = out_raw.iter_mut().map(|l| l.as_mut_ptr()).collect();
        let mut events: Vec<*mut sys::PJRT_Event> = vec![std::ptr::null_mut(); args.len()];
        let mut options = sys::PJRT_ExecuteOptions::new();
        options.non_donatable_input_indices = keep.as_ptr();
        options.num_non_donatable_input_indices = keep.len();
        let mut a = sys::PJRT_LoadedExecutable_Execute_Args::new();
        a.executable = self.raw;
        a.options = &mut options;
        a.argument_lists = list_ptrs.as_ptr();
        a.num_devices = args.len();
        a.num_args = n_args;
        a.output_lists = out_ptrs.as_ptr();
        a.device_complete_events = events.as_mut_ptr();
        let called = self.plugin.call("PJRT_LoadedExecutable_Execute", slot::LOADED_EXECUTABLE_EXECUTE, &mut a);
        // Own whatever came back before looking at errors, so nothing leaks.
        let owned: Vec<Vec<Buffer>> = out_raw
            .into_iter()
            .map(|l| {
                l.into_iter().filter(|b| !b.is_null()).map(|raw| Buffer { plugin: self.plugin.clone(), raw }).collect()
            })
            .collect();
        let waited: Vec<Result<(), PjrtError>> =
            events.into_iter().map(|e| Event::adopt(&self.plugin, e).wait("PJRT_LoadedExecutable_Execute")).collect();
        called?;
        for w in waited {
            w?;
        }
        if owned.iter().any(|o| o.len() != outputs) {
            return Err(PjrtError::Invalid(format!("the executable returned fewer than its {outputs} outputs")));
        }
        Ok(owned)
    }
}

impl Drop for Executable {
    fn drop(&mut self) {
        let mut a = sys::PJRT_LoadedExecutable_Destroy_Args::new();
        a.executable = self.raw;
        let _ = self.plugin.call("PJRT_LoadedExecutable_Destroy", slot::LOADED_EXECUTABLE_DESTROY, &mut a);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compile_options_are_the_measured_bytes_and_never_empty() {
        // ../shared/notes/pjrt.md: one device `1a 04 20 01 28 01`, two replicas `1a 04 20 02 28 01`.
        assert_eq!(super::compile_options(1), [0x1a, 0x04, 0x20, 0x01, 0x28, 0x01]);
        assert_eq!(super::compile_options(2), [0x1a, 0x04, 0x20, 0x02, 0x28, 0x01]);
        assert_eq!(super::compile_options(0), super::compile_options(1));
        assert_eq!(super::compile_options(300), [0x1a, 0x05, 0x20, 0xac, 0x02, 0x28, 0x01]);
    }
}

/// The loader's own message (dlerror's text); libloading's Display of a
/// dlopen error says only that it failed.
fn dl_detail(e: &libloading::Error) -> String {
    match std::error::Error::source(e) {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}
