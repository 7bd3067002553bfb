//! The fuzz targets: what specc does with an input file, end to end, as a
//! user would run it. Each returns how far the input got (`Ok`), or the
//! typed error specc gave (`Err`): both are fine. A panic, an abort, a
//! signal or a hang is a bug; the worker process that runs a target
//! (`supervisor`) tells those apart.

use crate::mutate_onnx::MODEL;
use specc::commands::Device;
use specc::commands::estimate::{EstimateOptions, estimate_report};
use specc::commands::run::{Prompt, RunOptions, run};
use specc_driver::compile::{CompileOptions, GenerationOptions, compile, compile_generation};
use specc_ir::{DType, Dim, Literal, LiteralData};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An ONNX file: inspect, import, specialize, compile (target passes,
    /// lowering, the artifact), run the graph; with past inputs, the
    /// generation graphs too, and a few generated tokens.
    Onnx,
    /// An artifact directory: open (every manifest check), estimate, load
    /// on the reference backend and generate a few tokens.
    Artifact,
    /// A `tokenizer.json` (the model's, copied into artifacts): load, check
    /// against a vocabulary, encode, decode, stream-decode.
    Tokenizer,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Onnx, Target::Artifact, Target::Tokenizer];

    pub fn name(self) -> &'static str {
        match self {
            Target::Onnx => "onnx",
            Target::Artifact => "artifact",
            Target::Tokenizer => "tokenizer",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// Runs `target` on the case in `dir`; `choice` (from the case's hash)
/// picks among options so that a replay takes the same path.
pub fn run_target(target: Target, dir: &Path, choice: u64) -> Result<String, String> {
    match target {
        Target::Onnx => onnx(dir, choice),
        Target::Artifact => artifact(dir, choice),
        Target::Tokenizer => tokenizer(dir),
    }
}

pub const TOKENIZER: &str = "tokenizer.json";

fn tokenizer(dir: &Path) -> Result<String, String> {
    let text = specc_driver::text::Text::from_file(&dir.join(TOKENIZER)).map_err(|e| e.to_string())?;
    text.check_model_vocab(4096).map_err(|e| e.to_string())?;
    let ids = text
        .encode("def parse(s):\n    return {\"id\": 17, \"name\": \"h\u{e9}llo \u{1F916}\"}\n")
        .map_err(|e| e.to_string())?;
    let _ = text.decode(&ids);
    let mut stream = text.stream();
    let _ = stream(&ids);
    // Ids the tokenizer may not have, and the ends of the id type.
    let _ = stream(&[0, 1, 4095, 4096, 1 << 31, -1]);
    let _ = text.decode(&[-1, i64::MAX, 0]);
    Ok(format!("{} tokens", ids.len()))
}

fn onnx(dir: &Path, choice: u64) -> Result<String, String> {
    let model = dir.join(MODEL);
    // inspect works on models specc cannot import; it must not fail badly.
    let _ = specc::commands::inspect::inspect(&model);
    let m = specc_onnx::import_file(&model).map_err(|e| e.to_string())?;
    // Bind every named dim of the inputs to a small size (formulas such as
    // `past_sequence_length + sequence_length` bind themselves).
    let mut names = BTreeSet::new();
    for &p in m.graph.params() {
        for d in m.graph.ty(p).shape.dims() {
            if let Dim::Sym(s) = d
                && !d.is_anonymous()
                && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.')
            {
                names.insert(s.clone());
            }
        }
    }
    let dims: Vec<String> =
        names.iter().enumerate().map(|(i, n)| format!("{n}={}", 1 + (choice as usize + i) % 3)).collect();
    let o = CompileOptions {
        dims,
        target: if choice & 1 == 0 { specc_hlo::Target::Trn1 } else { specc_hlo::Target::Xla },
        dtype: if choice & 2 == 0 { DType::F32 } else { DType::BF16 },
        ..Default::default()
    };
    let out = dir.join("out");
    compile(&model, &out, &o).map_err(|e| e.to_string())?;
    let a = specc_artifact::Artifact::open(&out).map_err(|e| e.to_string())?;
    let entry = &a.manifest.graphs[0];
    let graph = a.graph_ir(entry).map_err(|e| e.to_string())?;
    let weights = a.weights("model").map_err(|e| e.to_string())?;
    // Run it on zeros, when it is small enough to be quick.
    let bytes: usize =
        graph.ids().map(|id| graph.ty(id).size_bytes().unwrap_or(usize::MAX)).fold(0, usize::saturating_add);
    let mut stage = "compiled".to_string();
    if bytes <= 64 << 20 {
        let session =
            specc_interp::Session::<specc_interp::Cpu>::new(graph.clone(), &weights, specc_interp::cpu_device())
                .map_err(|e| e.to_string())?;
        let inputs: Vec<(String, Literal)> = graph
            .params()
            .iter()
            .map(|&p| {
                let ty = graph.ty(p);
                let shape = ty.shape.as_fixed().unwrap_or_default();
                let n: usize = shape.iter().product();
                let data = match ty.dtype {
                    DType::F32 => LiteralData::F32(vec![0.5; n]),
                    DType::BF16 => LiteralData::BF16(vec![0x3f00; n]),
                    DType::I32 => LiteralData::I32(vec![0; n]),
                    DType::I64 => LiteralData::I64(vec![0; n]),
                    DType::Bool => LiteralData::Bool(vec![true; n]),
                };
                (graph.node(p).name.clone(), Literal { shape, data })
            })
            .collect();
        let named: Vec<(&str, &Literal)> = inputs.iter().map(|(n, l)| (n.as_str(), l)).collect();
        session.run_named(&named).map_err(|e| e.to_string())?;
        stage = "ran".into();
    }
    // A with-past export: the generation graphs, and a few tokens.
    let with_past = m.graph.params().iter().any(|&p| m.graph.node(p).name.starts_with("past_key_values"));
    if with_past {
        let gen_out = dir.join("gen");
        let g = GenerationOptions {
            draft: None,
            spec: specc_spec::SpecConfig { ks: vec![2], capacity: 16, buckets: vec![4] },
            tokenizer: None,
        };
        let o = CompileOptions { dims: vec![], ..o };
        compile_generation(&model, &gen_out, &o, &g).map_err(|e| e.to_string())?;
        generate(&gen_out, choice)?;
        stage = "generated".into();
    }
    Ok(stage)
}

fn generate(dir: &Path, choice: u64) -> Result<(), String> {
    let o = RunOptions {
        prompt: Prompt::Ids(vec![1, 2, 3]),
        max_new_tokens: 4,
        no_speculation: choice & 4 != 0,
        prompt_lookup: choice & 8 != 0 && choice & 4 == 0,
        ignore_eos: true,
        json: false,
        sampling: (choice & 16 != 0).then_some(specc_exec::Sampling {
            temperature: 0.8,
            top_k: 5,
            top_p: 0.9,
            seed: choice,
        }),
        k: None,
        adaptive: choice & 32 != 0,
        device: Device::Reference,
    };
    run(dir, &o).map(|_| ()).map_err(|e| e.to_string())
}

fn artifact(dir: &Path, choice: u64) -> Result<String, String> {
    let estimate = estimate_report(
        dir,
        &EstimateOptions { instance: "trn1.2xlarge".into(), acceptance: Some(0.8), ..Default::default() },
    );
    let ran = generate(dir, choice);
    match (estimate, ran) {
        (Ok(_), Ok(())) => Ok("estimated+ran".into()),
        (Ok(_), Err(e)) => Err(format!("estimated; run: {e}")),
        (Err(e), Ok(())) => Err(format!("ran; estimate: {e}")),
        (Err(e), Err(_)) => Err(e.to_string()),
    }
}
