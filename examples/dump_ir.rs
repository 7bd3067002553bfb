//! Prints a model's IR, as imported or specialized (`--dim name=value`).
//! A debugging aid: `cargo run --release --example dump_ir -- MODEL [--dim ...]`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let m = specc_onnx::import_file(args[0].as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let dims: Vec<String> = args.iter().skip(1).filter(|a| a.contains('=')).cloned().collect();
    if dims.is_empty() {
        print!("{}", m.graph);
        return;
    }
    let b = specc::commands::parse_dims(&dims).unwrap();
    let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap_or_else(|e| panic!("{e}"));
    print!("{g}");
}
