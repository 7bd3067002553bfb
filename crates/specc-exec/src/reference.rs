//! The reference backend: the interpreter on the CPU, as the device.

use crate::backend::{Backend, BackendError};
use specc_artifact::{Artifact, GraphEntry};
use specc_interp::{Session, Value};
use specc_ir::{DType, Literal, LiteralData};
use std::collections::HashMap;

struct Loaded<B: burn_backend::Backend> {
    session: Session<B>,
    entry: GraphEntry,
    /// Parameter index -> state name, for state parameters.
    state_params: HashMap<usize, String>,
}

pub struct Reference<B: burn_backend::Backend = specc_interp::Cpu> {
    device: B::Device,
    graphs: HashMap<String, Loaded<B>>,
    state: HashMap<String, Value<B>>,
}

impl<B: burn_backend::Backend> Reference<B> {
    pub fn new(device: B::Device) -> Reference<B> {
        Reference { device, graphs: HashMap::new(), state: HashMap::new() }
    }
}

impl<B: burn_backend::Backend> Reference<B> {
    /// A state tensor (a KV cache) read back to the host: for debugging and
    /// for checking the loop against other executors.
    pub fn state(&self, name: &str) -> Option<Literal> {
        self.state.get(name).map(Value::to_literal)
    }
}

impl Default for Reference<specc_interp::Cpu> {
    fn default() -> Self {
        Reference::new(specc_interp::cpu_device())
    }
}

fn zeros(dtype: DType, shape: &[usize]) -> Literal {
    let n = shape.iter().product();
    let data = match dtype {
        DType::F32 => LiteralData::F32(vec![0.0; n]),
        DType::BF16 => LiteralData::BF16(vec![0; n]),
        DType::I32 => LiteralData::I32(vec![0; n]),
        DType::I64 => LiteralData::I64(vec![0; n]),
        DType::Bool => LiteralData::Bool(vec![false; n]),
    };
    Literal::new(shape.to_vec(), data).expect("sized")
}

impl<B: burn_backend::Backend> Backend for Reference<B> {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn description(&self) -> String {
        "reference: specc's interpreter (burn) on the CPU".into()
    }

    fn load(&mut self, artifact: &Artifact) -> Result<(), BackendError> {
        // Each model's weights once, shared by all its graphs.
        let mut weights: HashMap<(String, String), Value<B>> = HashMap::new();
        for m in &artifact.manifest.models {
            let store = artifact.weights(&m.name)?;
            for name in store.names().map(String::from).collect::<Vec<_>>() {
                let e = store.get(&name).expect("listed");
                let bytes = e
                    .bytes
                    .read()
                    .map_err(|source| specc_artifact::ArtifactError::Io { path: name.clone(), source })?;
                let dims = e.ty.shape.as_fixed().expect("static");
                weights.insert((m.name.clone(), name), Value::from_le_bytes(e.ty.dtype, &dims, &bytes, &self.device));
            }
        }
        for entry in &artifact.manifest.graphs {
            let g = artifact.graph_ir(entry)?;
            let err = |message: String| BackendError::Graph { graph: entry.name.clone(), message };
            let mut values = Vec::new();
            for p in entry.parameters.iter().filter(|p| p.kind == "weight") {
                let model = p.model.clone().unwrap_or_else(|| entry.model.clone());
                let v = weights
                    .get(&(model.clone(), p.name.clone()))
                    .ok_or_else(|| err(format!("no weight `{}` in model `{model}`", p.name)))?;
                values.push(v.clone());
            }
            let session = Session::with_weights(g, values, self.device.clone()).map_err(|e| err(e.to_string()))?;
            let mut state_params = HashMap::new();
            for out in &entry.outputs {
                if let Some(p) = out.aliases_parameter {
                    let param = &entry.parameters[p];
                    state_params.insert(p, param.name.clone());
                    if !self.state.contains_key(&param.name) {
                        let dtype =
                            DType::from_name(&param.dtype).ok_or_else(|| err(format!("dtype {}", param.dtype)))?;
                        self.state
                            .insert(param.name.clone(), Value::from_literal(&zeros(dtype, &param.shape), &self.device));
                    }
                }
            }
            self.graphs.insert(entry.name.clone(), Loaded { session, entry: entry.clone(), state_params });
        }
        Ok(())
    }

    fn execute(&mut self, graph: &str, inputs: &[(&str, &Literal)]) -> Result<Vec<(String, Literal)>, BackendError> {
        let g = self.graphs.get(graph).ok_or_else(|| BackendError::NoGraph(graph.into()))?;
        let err = |message: String| BackendError::Graph { graph: graph.into(), message };
        let mut args = Vec::new();
        for p in g.entry.parameters.iter().filter(|p| p.kind == "input") {
            args.push(match g.state_params.get(&p.index) {
                Some(name) => self.state[name].clone(),
                None => {
                    let lit = inputs
                        .iter()
                        .find(|(n, _)| *n == p.name)
                        .map(|(_, l)| *l)
                        .ok_or_else(|| err(format!("missing input `{}`", p.name)))?;
                    if lit.dtype().name() != p.dtype || lit.shape != p.shape {
                        return Err(err(format!(
                            "input `{}` is {}, the graph takes {}{:?}",
                            p.name,
                            lit.ty(),
                            p.dtype,
                            p.shape
                        )));
                    }
                    Value::from_literal(lit, &self.device)
                }
            });
        }
        let outs = g.session.run(args).map_err(|e| err(e.to_string()))?;
        let mut returned = Vec::new();
        for (o, v) in g.entry.outputs.iter().zip(outs) {
            match o.aliases_parameter {
                Some(p) => {
                    let name = g.state_params[&p].clone();
                    self.state.insert(name, v);
                }
                None => returned.push((o.name.clone(), v.to_literal())),
            }
        }
        Ok(returned)
    }
}
