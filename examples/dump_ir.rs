//! Prints a model's IR (as imported, or specialized with `name=value`
//! args) or, with `--hlo`, the HLO text of the specialized graph. A
//! debugging aid: `cargo run --release --example dump_ir -- MODEL [--hlo] [name=value ...]`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let m = specc_onnx::import_file(args[0].as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let dims: Vec<String> = args.iter().skip(1).filter(|a| a.contains('=')).cloned().collect();
    let hlo = args.iter().any(|a| a == "--hlo");
    if dims.is_empty() && !hlo {
        print!("{}", m.graph);
        return;
    }
    let b = specc_opt::Bindings::parse_flags(&dims).unwrap();
    let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap_or_else(|e| panic!("{e}"));
    if hlo {
        let module = specc_hlo::lower(&g, &[]).unwrap_or_else(|e| panic!("{e}"));
        print!("{}", specc_hlo::to_text(&module));
        std::fs::write("/tmp/dump.hlo.pb", specc_hlo::to_proto_bytes(&module)).unwrap();
    } else {
        print!("{g}");
    }
}
