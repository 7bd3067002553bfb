//! `specc inspect model.onnx` (the report is built by `specc_onnx`, the
//! only crate that reads ONNX).

pub use specc_onnx::inspect_report as inspect;
