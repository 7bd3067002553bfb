//! Times the reference interpreter on one model and one set of inputs:
//! as imported and specialized to the inputs' shapes. Used by
//! tools/bench_interp.py, which times onnxruntime on the same inputs in the
//! same run. Prints one JSON object.
//!
//! Usage: interp_bench MODEL.onnx INPUTS.safetensors RUNS

use burn_backend::Backend;
use specc_interp::{Session, Value};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<B: Backend>(s: &Session<B>, inputs: &[Value<B>], runs: usize) -> Vec<f64> {
    s.run(inputs.to_vec()).expect("warm-up run");
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = s.run(inputs.to_vec()).expect("run");
            // Reading the outputs back is part of the work, as for onnxruntime.
            for v in &out {
                std::hint::black_box(v.to_literal());
            }
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    match std::env::var("SPECC_BACKEND").as_deref() {
        Ok("flex") => bench::<burn_flex::Flex>(Default::default()),
        _ => bench::<specc_interp::Cpu>(specc_interp::cpu_device()),
    }
}

fn bench<B: Backend>(device: B::Device) {
    let args: Vec<String> = std::env::args().collect();
    let (model, inputs, runs) = (&args[1], &args[2], args[3].parse::<usize>().unwrap());
    let m = specc_onnx::import_file(model.as_ref()).unwrap();
    let ins = specc::tensor_io::read(inputs.as_ref()).unwrap();
    let order = |g: &specc_ir::Graph| -> Vec<Value<B>> {
        g.params()
            .iter()
            .map(|&p| {
                let name = &g.node(p).name;
                let lit = &ins.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no input {name}")).1;
                Value::from_literal(lit, &device)
            })
            .collect()
    };
    let shapes: Vec<(&str, &[usize])> = ins.iter().map(|(n, l)| (n.as_str(), l.shape.as_slice())).collect();
    let bindings = specc_opt::Bindings::from_shapes(&m.graph, &shapes).unwrap();
    let (sg, report) = specc_opt::specialize(&m.graph, &bindings).unwrap();
    let imported = Session::<B>::new(m.graph.clone(), &m.weights, device.clone()).unwrap();
    let specialized = Session::<B>::new(sg, &m.weights, device.clone()).unwrap();
    let a = time(&imported, &order(imported.graph()), runs);
    let b = time(&specialized, &order(specialized.graph()), runs);
    if std::env::var("SPECC_PROFILE").is_ok() {
        let mut p = specc_interp::Profile::default();
        for _ in 0..runs {
            specialized.run_profiled(order(specialized.graph()), Some(&mut p)).unwrap();
        }
        let mut rows: Vec<_> = p.by_op.iter().collect();
        rows.sort_by(|a, b| b.1.1.cmp(&a.1.1));
        for (op, (n, t)) in rows {
            eprintln!("{op:<22} {:>5} nodes {:>9.3} ms/run", n / runs, t.as_secs_f64() * 1e3 / runs as f64);
        }
    }
    println!(
        "{{\"imported_ms\": {:.4}, \"specialized_ms\": {:.4}, \"imported_nodes\": {}, \"specialized_nodes\": {}, \"runs\": {runs}}}",
        median(a),
        median(b),
        report.nodes_before,
        report.nodes_after
    );
}
