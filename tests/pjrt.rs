//! The PJRT backend on XLA's CPU plugin (the `xla-cpu-pjrt` wheel that
//! tools/setup-ci-venv.sh installs into .venv-ci): the whole generation
//! loop gives exactly the reference backend's tokens and acceptance.
//! The plugin is required: without it every test here fails, loudly.

mod common;
use common::*;
use specc_artifact::Artifact;
use specc_driver::compile::{CompileOptions, GenerationSources, compile_models};
use specc_exec::pjrt::{ExecutableCache, PjrtOptions, PluginChoice};
use specc_exec::{Engine, GenerateOptions, Generation, Mode, Pjrt, Reference};
use specc_hlo::Target;
use specc_spec::SpecConfig;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The CPU plugin of .venv-ci, or a failure that says how to get it.
fn plugin() -> PathBuf {
    let venv = repo().join(".venv-ci");
    let choice = PluginChoice::Cpu;
    match specc_exec::pjrt::find_plugin_in(Some(&choice), &[venv]) {
        Ok((p, _)) => p,
        Err(e) => panic!(
            "\n\n*** the PJRT CPU plugin is not installed, so the PJRT backend cannot be tested ***\n{e}\nrun tools/setup-ci-venv.sh\n"
        ),
    }
}

fn options(cache: ExecutableCache) -> PjrtOptions {
    PjrtOptions { plugin: Some(PluginChoice::Path(plugin())), cache, devices: 1 }
}

/// The bundled pair, compiled once for every test of this file (K 1..6).
fn pair() -> &'static Artifact {
    static A: OnceLock<Artifact> = OnceLock::new();
    A.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("specc-pjrt-{}-pair", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let target = decoder("target", &repo().join("graphs/pair/target/with_past/model.onnx"));
        let draft = decoder("draft", &repo().join("graphs/pair/draft/with_past/model.onnx"));
        let spec = SpecConfig { ks: (1..=6).collect(), capacity: 160, buckets: vec![16, 64] };
        let sources = GenerationSources { target: "pair".into(), eos_token_ids: vec![], tokenizer: None, inputs: None };
        compile_models(
            &target,
            Some((&draft, "draft")),
            &sources,
            &out,
            &CompileOptions { target: Target::Trn1, ..Default::default() },
            &spec,
        )
        .unwrap();
        Artifact::open(&out).unwrap()
    })
}

fn prompt() -> Vec<i64> {
    // `{"user": {"id": 17, "name": "` in the pair's byte-level BPE, or any
    // ids: the loop must agree either way.
    vec![91, 34, 117, 115, 101, 114, 34, 58, 32, 123, 34, 105, 100, 34, 58, 32, 49, 55]
}

fn run<B: specc_exec::Backend>(e: &mut Engine<B>, o: &GenerateOptions) -> Generation {
    e.generate(&prompt(), o, &mut |_| {}).unwrap()
}

#[test]
fn plain_decoding_matches_the_reference() {
    let a = pair();
    let mut r = Engine::load(a, Reference::default()).unwrap();
    let mut p = Engine::load(a, Pjrt::new(options(ExecutableCache::Off))).unwrap();
    let o = GenerateOptions { ignore_eos: true, ..GenerateOptions::greedy(40, Mode::Plain) };
    let want = run(&mut r, &o);
    let got = run(&mut p, &o);
    eprintln!("{}", p.backend().description());
    assert_eq!(got.tokens, want.tokens);
}
