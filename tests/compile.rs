//! `specc compile`: the artifact it writes, the checks on reading it back,
//! the Neuron profile's refusals, and the neuronx-cc driver (with a
//! stand-in compiler on PATH).

mod common;
use common::*;
use specc_artifact::{Artifact, ArtifactError};
use specc_driver::compile::{CompileError, CompileOptions, WeightMode, compile};
use specc_hlo::Target;
use specc_interp::{Cpu, Session, cpu_device};
use specc_ir::Literal;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-compile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn decode_dims() -> Vec<String> {
    ["batch_size=1", "sequence_length=1", "past_sequence_length=11"].map(String::from).to_vec()
}

fn llama() -> PathBuf {
    fixture("llama").join("with_past/model.onnx")
}

fn opts(target: Target) -> CompileOptions {
    CompileOptions { dims: decode_dims(), target, ..Default::default() }
}

#[test]
fn artifact_runs_like_onnxruntime_and_names_neff_tensors() {
    for target in [Target::Trn1, Target::Xla] {
        let out = tmp(&format!("ok-{}", target.name())).join("art");
        let report = compile(&llama(), &out, &opts(target)).unwrap();
        assert!(report.contains("wrote"), "{report}");
        let a = Artifact::open(&out).unwrap();
        let m = &a.manifest;
        assert_eq!((m.format.as_str(), m.format_version, m.target.as_str()), ("specc-artifact", 1, target.name()));
        let g = &m.graphs[0];
        assert_eq!(g.kind, "decode");
        for (i, p) in g.parameters.iter().enumerate() {
            assert_eq!((p.index, p.neff_name.clone()), (i, format!("input{i}")));
        }
        assert_eq!(g.outputs[0].neff_name, "output0");
        let ids = &g.parameters[0];
        assert_eq!(ids.name, "input_ids");
        match target {
            Target::Trn1 => assert_eq!((ids.dtype.as_str(), ids.narrowed_from.as_deref()), ("s32", Some("s64"))),
            _ => assert_eq!((ids.dtype.as_str(), ids.narrowed_from.as_deref()), ("s64", None)),
        }
        // Every file reads back with its checksum; the IR and weights run on
        // the interpreter and give onnxruntime's decode outputs.
        for f in [&g.hlo_pb, &g.hlo_txt, &g.ir] {
            a.read(f).unwrap();
        }
        assert!(!a.read(&g.hlo_txt).unwrap().is_empty());
        let graph = a.graph_ir(g).unwrap();
        let weights = a.weights("model").unwrap();
        let s = Session::<Cpu>::new(graph, &weights, cpu_device()).unwrap();
        let inputs = read(&fixture("llama").join("reference/decode.in.safetensors"));
        let want = read(&fixture("llama").join("reference/decode.out.safetensors"));
        let narrowed: Vec<(String, Literal)> = inputs
            .iter()
            .map(|(n, l)| {
                let param = g.parameters.iter().find(|p| &p.name == n).unwrap();
                let l = match (&l.data, param.dtype.as_str()) {
                    (specc_ir::LiteralData::I64(v), "s32") => {
                        Literal::new(l.shape.clone(), specc_ir::LiteralData::I32(v.iter().map(|&x| x as i32).collect()))
                            .unwrap()
                    }
                    _ => l.clone(),
                };
                (n.clone(), l)
            })
            .collect();
        let named: Vec<(&str, &Literal)> = narrowed.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let got = s.run_named(&named).unwrap();
        for (name, w) in &want {
            let g = &got.iter().find(|(n, _)| n == name).unwrap().1;
            compare(name, g, w, Tolerance::Abs(1e-4)).unwrap();
        }
        // Without neuronx-cc, the manifest records the exact command.
        assert!(g.neuronx_cc.command.join(" ").contains("--framework XLA"));
    }
}

fn corrupt_artifact(name: &str, edit: impl Fn(&Path)) -> ArtifactError {
    let out = tmp(name).join("art");
    compile(&llama(), &out, &opts(Target::Xla)).unwrap();
    edit(&out);
    match Artifact::open(&out) {
        Err(e) => e,
        Ok(a) => {
            let g = &a.manifest.graphs[0];
            a.read(&g.ir).and_then(|_| a.weights("model")).map(|_| ()).expect_err("the edit must be detected")
        }
    }
}

#[test]
fn missing_corrupt_and_foreign_artifacts_are_refused() {
    let e = corrupt_artifact("missing", |d| std::fs::remove_file(d.join("graphs/model.hlo.txt")).unwrap());
    assert!(matches!(&e, ArtifactError::Missing { file } if file.ends_with("graphs/model.hlo.txt")), "{e}");

    let e = corrupt_artifact("flipped", |d| {
        let p = d.join("graphs/model.ir");
        let mut b = std::fs::read(&p).unwrap();
        let k = b.len() / 2;
        b[k] ^= 0x55;
        std::fs::write(&p, b).unwrap();
    });
    assert!(
        matches!(&e, ArtifactError::Corrupt { file, detail } if file.ends_with("model.ir") && detail.contains("checksum")),
        "{e}"
    );

    let e = corrupt_artifact("truncated", |d| {
        let p = d.join("weights/model.safetensors");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
    });
    assert!(matches!(&e, ArtifactError::Corrupt { file, .. } if file.ends_with("model.safetensors")), "{e}");

    let e = corrupt_artifact("version", |d| {
        let p = d.join("manifest.json");
        let t = std::fs::read_to_string(&p).unwrap().replace("\"format_version\": 1", "\"format_version\": 99");
        std::fs::write(&p, t).unwrap();
    });
    assert!(matches!(e, ArtifactError::Version { found: 99, supported: 1, .. }), "{e}");
    assert!(e.to_string().contains("recompile"), "{e}");

    let e = corrupt_artifact("no-manifest", |d| std::fs::remove_file(d.join("manifest.json")).unwrap());
    assert!(matches!(e, ArtifactError::NotAnArtifact { .. }), "{e}");
}

#[test]
fn neuron_profile_refuses_a_runtime_exponent_naming_the_instruction() {
    let model = repo().join("graphs/bad/pow_runtime_exponent.onnx");
    let out = tmp("pow").join("art");
    let e = compile(&model, &out, &CompileOptions { target: Target::Trn1, ..Default::default() }).unwrap_err();
    let CompileError::Target { violations, .. } = &e else { panic!("{e}") };
    assert_eq!(violations.len(), 1);
    assert_eq!((violations[0].rule, violations[0].origin.as_str()), ("constant exponents", "pow_dynamic"));
    assert!(e.to_string().contains("%power"), "{e}");
    assert!(!out.exists(), "a failed compile must not leave an artifact");
    // The portable profile takes it.
    compile(&model, &out, &CompileOptions { target: Target::Xla, ..Default::default() }).unwrap();
    assert!(Artifact::open(&out).is_ok());
}

#[test]
fn failed_compile_keeps_the_old_artifact_and_leaves_no_partial_one() {
    let dir = tmp("atomic");
    let out = dir.join("art");
    compile(&llama(), &out, &opts(Target::Xla)).unwrap();
    let before = std::fs::read(out.join("manifest.json")).unwrap();
    let bad = CompileOptions { dims: vec!["batch=1".into()], ..opts(Target::Xla) };
    let e = compile(&llama(), &out, &bad).unwrap_err();
    assert!(e.to_string().contains("unknown dim `batch`"), "{e}");
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("art")], "staging directories must be cleaned up");
    // Dims left unbound are named.
    let e = compile(&llama(), &dir.join("art2"), &CompileOptions { dims: vec![], ..opts(Target::Xla) }).unwrap_err();
    assert!(e.to_string().contains("unbound dims: batch_size, sequence_length"), "{e}");
}

/// A stand-in `neuronx-cc`: checks its arguments and writes the NEFF.
fn stand_in(dir: &Path, exit: i32) -> PathBuf {
    let p = dir.join("neuronx-cc");
    let script = format!(
        r#"#!/bin/sh
[ "$1" = compile ] || {{ echo "expected the compile subcommand" >&2; exit 9; }}
case "$*" in *"--framework XLA"*"--target trn1"*"--model-type transformer"*"--auto-cast none"*"-O2"*) ;; *) echo "bad flags: $*" >&2; exit 9;; esac
[ -f "$2" ] || {{ echo "no input $2" >&2; exit 9; }}
while [ $# -gt 0 ]; do case "$1" in --output) out="$2";; --logfile) log="$2";; esac; shift; done
echo "stand-in neuronx-cc ran" > "$log"
[ {exit} -eq 0 ] || {{ echo "NCC_EXXX001 stand-in failure" >&2; exit {exit}; }}
printf 'NEFF' > "$out"
"#
    );
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn neuronx_cc_runs_when_installed_and_its_failures_are_surfaced() {
    let dir = tmp("neuronx");
    let cc = stand_in(&dir, 0);
    let out = dir.join("art");
    let mut o = opts(Target::Trn1);
    o.neuronx.compiler = Some(cc);
    // Keep the user's NEFF cache out of tests (tests/neuronx.rs covers it).
    o.neuronx.neff_cache = specc_driver::neff_cache::CacheSetting::Off;
    let report = compile(&llama(), &out, &o).unwrap();
    assert!(report.contains("neuronx-cc built graphs/model.neff"), "{report}");
    let a = Artifact::open(&out).unwrap();
    let g = &a.manifest.graphs[0];
    assert_eq!(g.neuronx_cc.status, "ok");
    assert_eq!(a.read(g.neff.as_ref().unwrap()).unwrap(), b"NEFF");
    assert!(g.neuronx_cc.log.is_some());

    let failing = stand_in(&dir.join("fail").tap_mkdir(), 3);
    o.neuronx.compiler = Some(failing);
    let e = compile(&llama(), &dir.join("art-fail"), &o).unwrap_err();
    let CompileError::Neuronx { failures, graphs: 1 } = &e else { panic!("{e}") };
    let [f] = &failures[..] else { panic!("{e}") };
    assert_eq!(f.graph, "model");
    assert!(f.detail.contains("NCC_EXXX001"), "{}", f.detail);
    assert!(std::fs::read_to_string(&f.log).unwrap().contains("stand-in neuronx-cc ran"));
    assert!(e.to_string().contains(&format!("its log is {}", f.log)), "{e}");
    assert!(!dir.join("art-fail").exists());
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn linked_weights_are_not_copied() {
    // The fixtures keep weights inline, so linking is refused with a reason.
    let out = tmp("link").join("art");
    let o = CompileOptions { weights: WeightMode::Link, ..opts(Target::Xla) };
    let e = compile(&llama(), &out, &o).unwrap_err();
    assert!(
        matches!(&e, CompileError::Artifact(ArtifactError::CannotLink(w)) if w == "model.embed_tokens.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("only weights stored as ONNX external data can be linked"), "{e}");
}

#[test]
fn linked_weights_point_into_the_external_data_and_run() {
    let model = repo().join("graphs/small/external_data.onnx");
    let out = tmp("link-ok").join("art");
    let o = CompileOptions {
        dims: vec!["n=3".into()],
        target: Target::Xla,
        weights: WeightMode::Link,
        ..Default::default()
    };
    compile(&model, &out, &o).unwrap();
    let a = Artifact::open(&out).unwrap();
    let specc_artifact::Weights::Linked { tensors, .. } = &a.manifest.models[0].weights else { panic!("not linked") };
    // `w` is linked; the 8-element bias is small enough to be a constant.
    assert_eq!(tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["w"]);
    assert!(tensors[0].file.ends_with("external_data.onnx.data"));
    assert!(!out.join("weights/model.safetensors").exists());
    // The linked weights run: compare with the model run straight from ONNX.
    let x = Literal::new(vec![3, 16], specc_ir::LiteralData::F32((0..48).map(|v| v as f32 / 10.0).collect())).unwrap();
    let via_artifact =
        Session::<Cpu>::new(a.graph_ir(&a.manifest.graphs[0]).unwrap(), &a.weights("model").unwrap(), cpu_device())
            .unwrap()
            .run_named(&[("x", &x)])
            .unwrap();
    let m = specc_onnx::import_file(&model).unwrap();
    let direct = Session::<Cpu>::new(m.graph, &m.weights, cpu_device()).unwrap().run_named(&[("x", &x)]).unwrap();
    assert_eq!(via_artifact[0].1, direct[0].1);
}
