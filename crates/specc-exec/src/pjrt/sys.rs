//! The slice of XLA's PJRT C API (`pjrt_c_api.h`) that specc calls, written
//! for specc from the header's documented layouts: each function takes one
//! argument struct whose first field is its own size, and returns a
//! `PJRT_Error*` (null on success).
//!
//! The plugin's function table (`PJRT_Api`) is read by position: the
//! header lists its function pointers in a fixed order after the version,
//! and fields are only ever appended. Each position used here is checked
//! against the table's `struct_size` before it is read.
//!
//! The argument structs are those of API version 0.81 (the oldest plugin
//! specc has run, `xla-cpu-pjrt` 0.0.1). Plugins refuse argument structs
//! smaller than their own; between 0.81 and 0.116 (the CUDA plugin) none
//! of these changed size (measured, `../shared/notes/pjrt.md`).

#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_int, c_void};

/// The oldest API version whose functions and structs specc relies on.
pub const MIN_MINOR: c_int = 81;

#[repr(C)]
pub struct PJRT_Error {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct PJRT_Client {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct PJRT_Device {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct PJRT_LoadedExecutable {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct PJRT_Executable {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct PJRT_Buffer {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct PJRT_Event {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct PJRT_SerializedExecutable {
    _opaque: [u8; 0],
}

type Ext = *mut c_void;

#[repr(C)]
pub struct PJRT_Api_Version {
    pub struct_size: usize,
    pub extension_start: Ext,
    pub major_version: c_int,
    pub minor_version: c_int,
}

/// The head of `PJRT_Api`: its size and version; the function pointers
/// follow at [`FN_TABLE_OFFSET`].
#[repr(C)]
pub struct PJRT_Api {
    pub struct_size: usize,
    pub extension_start: Ext,
    pub pjrt_api_version: PJRT_Api_Version,
}

pub const FN_TABLE_OFFSET: usize = std::mem::size_of::<PJRT_Api>();

/// Positions in the function table (the header's order).
pub mod slot {
    pub const ERROR_DESTROY: usize = 0;
    pub const ERROR_MESSAGE: usize = 1;
    pub const ERROR_GET_CODE: usize = 2;
    pub const PLUGIN_INITIALIZE: usize = 3;
    pub const EVENT_DESTROY: usize = 5;
    pub const EVENT_AWAIT: usize = 8;
    pub const CLIENT_CREATE: usize = 10;
    pub const CLIENT_DESTROY: usize = 11;
    pub const CLIENT_PLATFORM_NAME: usize = 12;
    pub const CLIENT_PLATFORM_VERSION: usize = 14;
    pub const CLIENT_ADDRESSABLE_DEVICES: usize = 16;
    pub const CLIENT_COMPILE: usize = 20;
    pub const CLIENT_BUFFER_FROM_HOST_BUFFER: usize = 22;
    pub const EXECUTABLE_DESTROY: usize = 40;
    pub const EXECUTABLE_NUM_OUTPUTS: usize = 44;
    pub const EXECUTABLE_SERIALIZE: usize = 49;
    pub const LOADED_EXECUTABLE_DESTROY: usize = 50;
    pub const LOADED_EXECUTABLE_GET_EXECUTABLE: usize = 51;
    pub const LOADED_EXECUTABLE_EXECUTE: usize = 55;
    pub const EXECUTABLE_DESERIALIZE_AND_LOAD: usize = 56;
    pub const BUFFER_DESTROY: usize = 58;
    pub const BUFFER_IS_DELETED: usize = 68;
    pub const BUFFER_TO_HOST_BUFFER: usize = 70;
    pub const BUFFER_UNSAFE_POINTER: usize = 73;
    pub const EXECUTABLE_OUTPUT_ELEMENT_TYPES: usize = 90;
    pub const EXECUTABLE_OUTPUT_DIMENSIONS: usize = 91;
    /// The last slot used: the table must reach it.
    pub const LAST: usize = 91;
}

/// Every function but two: `PJRT_Error* f(Args*)`.
pub type Fn = unsafe extern "C" fn(*mut c_void) -> *mut PJRT_Error;
/// `PJRT_Error_Destroy` and `PJRT_Error_Message` return nothing.
pub type VoidFn = unsafe extern "C" fn(*mut c_void);

/// `PJRT_Error_Code` values (absl status codes).
pub fn error_code_name(code: c_int) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "unknown code",
    }
}

/// `PJRT_Buffer_Type` values used by specc.
pub mod buffer_type {
    use std::ffi::c_int;
    pub const PRED: c_int = 1;
    pub const S32: c_int = 4;
    pub const S64: c_int = 5;
    pub const F32: c_int = 11;
    pub const BF16: c_int = 13;
}

/// `PJRT_NamedValue_Type::kInt64`.
pub const NAMED_VALUE_INT64: c_int = 1;
/// `PJRT_HostBufferSemantics::kImmutableOnlyDuringCall`: the data is copied
/// before the call returns.
pub const HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL: c_int = 0;

/// Defines an argument struct whose `struct_size` is filled in by `new()`
/// (every other field zero: null pointers, no options).
macro_rules! args {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[repr(C)]
        pub struct $name {
            pub struct_size: usize,
            pub extension_start: Ext,
            $(pub $field: $ty,)*
        }
        impl $name {
            pub fn new() -> $name {
                // SAFETY: every field is an integer, a raw pointer or an
                // Option of a function pointer, for all of which zero bytes
                // are a valid value (0, null, None).
                let mut a: $name = unsafe { std::mem::zeroed() };
                a.struct_size = std::mem::size_of::<$name>();
                a
            }
        }
    };
}

args!(PJRT_Error_Destroy_Args { error: *mut PJRT_Error });
args!(PJRT_Error_Message_Args { error: *const PJRT_Error, message: *const c_char, message_size: usize });
args!(PJRT_Error_GetCode_Args { error: *const PJRT_Error, code: c_int });
args!(PJRT_Plugin_Initialize_Args {});
args!(PJRT_Event_Destroy_Args { event: *mut PJRT_Event });
args!(PJRT_Event_Await_Args { event: *mut PJRT_Event });

// `PJRT_NamedValue`: the union is 8 bytes (an int64 here).
args!(PJRT_NamedValue {
    name: *const c_char,
    name_size: usize,
    kind: c_int,
    value: i64,
    value_size: usize,
});

args!(PJRT_Client_Create_Args {
    create_options: *const PJRT_NamedValue,
    num_options: usize,
    kv_get_callback: *const c_void,
    kv_get_user_arg: *mut c_void,
    kv_put_callback: *const c_void,
    kv_put_user_arg: *mut c_void,
    client: *mut PJRT_Client,
    kv_try_get_callback: *const c_void,
    kv_try_get_user_arg: *mut c_void,
});
args!(PJRT_Client_Destroy_Args { client: *mut PJRT_Client });
args!(PJRT_Client_PlatformName_Args { client: *mut PJRT_Client, platform_name: *const c_char, platform_name_size: usize });
args!(PJRT_Client_PlatformVersion_Args {
    client: *mut PJRT_Client,
    platform_version: *const c_char,
    platform_version_size: usize,
});
args!(PJRT_Client_AddressableDevices_Args {
    client: *mut PJRT_Client,
    addressable_devices: *const *mut PJRT_Device,
    num_addressable_devices: usize,
});
args!(PJRT_Program { code: *mut c_char, code_size: usize, format: *const c_char, format_size: usize });
args!(PJRT_Client_Compile_Args {
    client: *mut PJRT_Client,
    program: *const PJRT_Program,
    compile_options: *const c_char,
    compile_options_size: usize,
    executable: *mut PJRT_LoadedExecutable,
});
args!(PJRT_Client_BufferFromHostBuffer_Args {
    client: *mut PJRT_Client,
    data: *const c_void,
    kind: c_int,
    dims: *const i64,
    num_dims: usize,
    byte_strides: *const i64,
    num_byte_strides: usize,
    host_buffer_semantics: c_int,
    device: *mut PJRT_Device,
    memory: *mut c_void,
    device_layout: *mut c_void,
    done_with_host_buffer: *mut PJRT_Event,
    buffer: *mut PJRT_Buffer,
});
args!(PJRT_Buffer_ToHostBuffer_Args {
    src: *mut PJRT_Buffer,
    host_layout: *mut c_void,
    dst: *mut c_void,
    dst_size: usize,
    event: *mut PJRT_Event,
});
args!(PJRT_Buffer_Destroy_Args { buffer: *mut PJRT_Buffer });
args!(PJRT_Buffer_IsDeleted_Args { buffer: *mut PJRT_Buffer, is_deleted: bool });
args!(PJRT_Buffer_UnsafePointer_Args { buffer: *mut PJRT_Buffer, buffer_pointer: usize });
args!(PJRT_ExecuteOptions {
    send_callbacks: *mut c_void,
    recv_callbacks: *mut c_void,
    num_send_ops: usize,
    num_recv_ops: usize,
    launch_id: c_int,
    non_donatable_input_indices: *const i64,
    num_non_donatable_input_indices: usize,
    context: *mut c_void,
    call_location: *const c_char,
    num_tasks: usize,
    task_ids: *mut c_int,
    incarnation_ids: *mut i64,
});
args!(PJRT_LoadedExecutable_Execute_Args {
    executable: *mut PJRT_LoadedExecutable,
    options: *mut PJRT_ExecuteOptions,
    argument_lists: *const *const *mut PJRT_Buffer,
    num_devices: usize,
    num_args: usize,
    output_lists: *const *mut *mut PJRT_Buffer,
    device_complete_events: *mut *mut PJRT_Event,
    execute_device: *mut PJRT_Device,
});
args!(PJRT_LoadedExecutable_Destroy_Args { executable: *mut PJRT_LoadedExecutable });
args!(PJRT_LoadedExecutable_GetExecutable_Args {
    loaded_executable: *mut PJRT_LoadedExecutable,
    executable: *mut PJRT_Executable,
});
args!(PJRT_Executable_Destroy_Args { executable: *mut PJRT_Executable });
args!(PJRT_Executable_NumOutputs_Args { executable: *mut PJRT_Executable, num_outputs: usize });
args!(PJRT_Executable_OutputElementTypes_Args {
    executable: *mut PJRT_Executable,
    output_types: *mut c_int,
    num_output_types: usize,
});
args!(PJRT_Executable_OutputDimensions_Args {
    executable: *mut PJRT_Executable,
    num_outputs: usize,
    dims: *const i64,
    dim_sizes: *const usize,
});
args!(PJRT_Executable_Serialize_Args {
    executable: *const PJRT_Executable,
    serialized_bytes: *const c_char,
    serialized_bytes_size: usize,
    serialized_executable: *mut PJRT_SerializedExecutable,
    serialized_executable_deleter: Option<unsafe extern "C" fn(*mut PJRT_SerializedExecutable)>,
});
args!(PJRT_Executable_DeserializeAndLoad_Args {
    client: *mut PJRT_Client,
    serialized_executable: *const c_char,
    serialized_executable_size: usize,
    loaded_executable: *mut PJRT_LoadedExecutable,
    overridden_serialized_compile_options: *const c_char,
    overridden_serialized_compile_options_size: usize,
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes from the header's layouts on a 64-bit target (offset of the
    /// last field plus its size, padded to 8).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn argument_structs_have_the_headers_sizes() {
        use std::mem::size_of;
        assert_eq!(FN_TABLE_OFFSET, 40);
        assert_eq!(size_of::<PJRT_NamedValue>(), 56);
        assert_eq!(size_of::<PJRT_Client_Create_Args>(), 88);
        assert_eq!(size_of::<PJRT_Program>(), 48);
        assert_eq!(size_of::<PJRT_Client_Compile_Args>(), 56);
        assert_eq!(size_of::<PJRT_Client_BufferFromHostBuffer_Args>(), 120);
        assert_eq!(size_of::<PJRT_Buffer_ToHostBuffer_Args>(), 56);
        assert_eq!(size_of::<PJRT_ExecuteOptions>(), 112);
        assert_eq!(size_of::<PJRT_LoadedExecutable_Execute_Args>(), 80);
        assert_eq!(size_of::<PJRT_Executable_Serialize_Args>(), 56);
        assert_eq!(size_of::<PJRT_Executable_DeserializeAndLoad_Args>(), 64);
        assert_eq!(size_of::<PJRT_Buffer_IsDeleted_Args>(), 32);
    }
}
