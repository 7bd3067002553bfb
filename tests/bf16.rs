//! How far `--dtype bf16` (bf16 weights and weight matmuls, f32
//! accumulation and elsewhere) drifts from f32 on the fixtures: logits of a
//! prefill and a 24-token greedy continuation. The numbers are printed
//! (`--nocapture`) and recorded in BENCHMARKS.md; the assertion is a sanity
//! bound that a broken bf16 path (wrong rounding, a dropped convert) breaks.

mod common;
use common::*;
use specc_interp::{Cpu, Session, cpu_device};
use specc_ir::Literal;

#[test]
fn bf16_drift_from_f32() {
    for arch in ARCHS {
        let dir = fixture(arch);
        let m = specc_onnx::import_file(&dir.join("with_past/model.onnx")).unwrap();
        let ins = read(&dir.join("reference/prefill.in.safetensors"));
        let named: Vec<(&str, &Literal)> = ins.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let shapes: Vec<(&str, &[usize])> = named.iter().map(|(n, l)| (*n, l.shape.as_slice())).collect();
        let b = specc_opt::Bindings::from_shapes(&m.graph, &shapes).unwrap();
        let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap();
        let (gb, wb) = specc_opt::to_bf16(&g, &m.weights).unwrap();
        let f = Session::<Cpu>::new(g, &m.weights, cpu_device()).unwrap().run_named(&named).unwrap();
        let h = Session::<Cpu>::new(gb, &wb, cpu_device()).unwrap().run_named(&named).unwrap();
        let (lf, lh) = (&f[0].1, &h[0].1);
        let (vf, vh) = (lf.to_f64_vec(), lh.to_f64_vec());
        let max_diff = vf.iter().zip(&vh).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let scale = vf.iter().map(|a| a.abs()).fold(0.0, f64::max);
        let (af, ah) = (argmax_last(lf), argmax_last(lh));
        let agree = af.iter().zip(&ah).filter(|(a, b)| a == b).count();

        let prompt = greedy_prompt(arch);
        let want = greedy_reference(arch);
        let tokens = greedy_decode(&m, &prompt, want.len(), &|g, w| specc_opt::to_bf16(g, w).unwrap());
        let same_prefix = tokens.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let same_total = tokens.iter().zip(&want).filter(|(a, b)| a == b).count();
        eprintln!(
            "{arch}: prefill logits max |bf16 - f32| = {max_diff:.4} (max |logit| {scale:.2}, {:.2}%), top-1 agrees at {agree}/{} positions; greedy: first {same_prefix}/{} tokens equal, {same_total}/{} overall",
            100.0 * max_diff / scale,
            af.len(),
            want.len(),
            want.len()
        );
        assert!(max_diff < 0.05 * scale, "{arch}: bf16 logits drift {max_diff} against a scale of {scale}");
    }
}
