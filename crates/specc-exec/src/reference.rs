//! The reference backend: the interpreter on the CPU, as the device.

use crate::backend::{Backend, BackendError};
use specc_artifact::{Artifact, GraphEntry};
use specc_interp::RankGroup;
use specc_interp::{Session, Value};
use specc_ir::{DType, Literal, LiteralData};
use std::collections::HashMap;
use std::sync::Arc;

struct Loaded<B: burn_backend::Backend> {
    /// One session per tensor-parallel rank (one at tp 1), each over its
    /// rank's weights.
    sessions: Vec<Session<B>>,
    entry: GraphEntry,
    /// Parameter index -> state name, for state parameters.
    state_params: HashMap<usize, String>,
}

/// The interpreter as the device. An artifact compiled with `--tp N` runs
/// as N simulated ranks: each graph has one session per rank, each rank
/// keeps its own blocks of the state, and the ranks run on their own
/// threads, meeting at every all-reduce (`specc_interp::RankGroup`).
pub struct Reference<B: burn_backend::Backend = specc_interp::Cpu> {
    device: B::Device,
    graphs: HashMap<String, Loaded<B>>,
    /// Per rank, the state (KV caches) by name.
    state: Vec<HashMap<String, Value<B>>>,
    group: Option<Arc<RankGroup>>,
}

impl<B: burn_backend::Backend> Reference<B> {
    pub fn new(device: B::Device) -> Reference<B> {
        Reference { device, graphs: HashMap::new(), state: vec![HashMap::new()], group: None }
    }
}

impl<B: burn_backend::Backend> Reference<B> {
    /// A state tensor (a KV cache) read back to the host: for debugging and
    /// for checking the loop against other executors. Under tensor
    /// parallelism, rank 0's block.
    pub fn state(&self, name: &str) -> Option<Literal> {
        self.rank_state(0, name)
    }

    /// Rank `rank`'s block of a state tensor.
    pub fn rank_state(&self, rank: usize, name: &str) -> Option<Literal> {
        self.state.get(rank)?.get(name).map(Value::to_literal)
    }

    /// The simulated ranks (the artifact's tp).
    pub fn ranks(&self) -> usize {
        self.state.len()
    }

    /// A fresh group for every session: after a rank failed, the old group
    /// is poisoned for good.
    fn regroup(&mut self) {
        let tp = self.state.len();
        if tp == 1 {
            return;
        }
        let group = Arc::new(RankGroup::new(tp));
        for g in self.graphs.values_mut() {
            for (r, s) in g.sessions.iter_mut().enumerate() {
                s.set_rank(group.clone(), r);
            }
        }
        self.group = Some(group);
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
        let tp = artifact.manifest.tp.max(1);
        let upload = |store: &specc_ir::WeightStore, into: &mut HashMap<String, Value<B>>| {
            for name in store.names().map(String::from).collect::<Vec<_>>() {
                let e = store.get(&name).expect("listed");
                let bytes = e
                    .bytes
                    .read()
                    .map_err(|source| specc_artifact::ArtifactError::Io { path: name.clone(), source })?;
                let dims = e.ty.shape.as_fixed().expect("static");
                into.insert(name, Value::from_le_bytes(e.ty.dtype, &dims, &bytes, &self.device));
            }
            Ok::<(), BackendError>(())
        };
        // Each model's weights once, shared by all its graphs (and the
        // replicated ones by all ranks); each rank's blocks once per rank.
        let mut shared: HashMap<String, HashMap<String, Value<B>>> = HashMap::new();
        let mut blocks: HashMap<(String, usize), HashMap<String, Value<B>>> = HashMap::new();
        for m in &artifact.manifest.models {
            let stores = artifact.rank_stores(&m.name)?;
            upload(&stores.replicated, shared.entry(m.name.clone()).or_default())?;
            for (r, store) in stores.blocks.iter().enumerate() {
                upload(store, blocks.entry((m.name.clone(), r)).or_default())?;
            }
        }
        self.state = (0..tp).map(|_| HashMap::new()).collect();
        for entry in &artifact.manifest.graphs {
            let g = artifact.graph_ir(entry)?;
            let err = |message: String| BackendError::Graph { graph: entry.name.clone(), message };
            let mut sessions = Vec::with_capacity(tp);
            for r in 0..tp {
                let mut values = Vec::new();
                for p in entry.parameters.iter().filter(|p| p.kind == "weight") {
                    let model = p.model.clone().unwrap_or_else(|| entry.model.clone());
                    let v = blocks
                        .get(&(model.clone(), r))
                        .and_then(|b| b.get(&p.name))
                        .or_else(|| shared.get(&model).and_then(|w| w.get(&p.name)))
                        .ok_or_else(|| err(format!("no weight `{}` in model `{model}`", p.name)))?;
                    values.push(v.clone());
                }
                sessions.push(
                    Session::with_weights(g.clone(), values, self.device.clone()).map_err(|e| err(e.to_string()))?,
                );
            }
            let mut state_params = HashMap::new();
            for out in &entry.outputs {
                if let Some(p) = out.aliases_parameter {
                    let param = &entry.parameters[p];
                    state_params.insert(p, param.name.clone());
                    let dtype = DType::from_name(&param.dtype).ok_or_else(|| err(format!("dtype {}", param.dtype)))?;
                    for state in &mut self.state {
                        state
                            .entry(param.name.clone())
                            .or_insert_with(|| Value::from_literal(&zeros(dtype, &param.shape), &self.device));
                    }
                }
            }
            self.graphs.insert(entry.name.clone(), Loaded { sessions, entry: entry.clone(), state_params });
        }
        self.regroup();
        Ok(())
    }

    fn execute(&mut self, graph: &str, inputs: &[(&str, &Literal)]) -> Result<Vec<(String, Literal)>, BackendError> {
        let g = self.graphs.get(graph).ok_or_else(|| BackendError::NoGraph(graph.into()))?;
        let err = |message: String| BackendError::Graph { graph: graph.into(), message };
        let tp = self.state.len();
        let mut args: Vec<Vec<Value<B>>> = vec![Vec::new(); tp];
        for p in g.entry.parameters.iter().filter(|p| p.kind == "input") {
            if let Some(name) = g.state_params.get(&p.index) {
                for (r, a) in args.iter_mut().enumerate() {
                    a.push(self.state[r][name].clone());
                }
                continue;
            }
            if p.name == specc_ir::RANK_INPUT {
                for (r, a) in args.iter_mut().enumerate() {
                    a.push(Value::from_literal(&Literal::scalar_i32(r as i32), &self.device));
                }
                continue;
            }
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
            let v = Value::from_literal(lit, &self.device);
            for a in &mut args {
                a.push(v.clone());
            }
        }
        let outs: Vec<Vec<Value<B>>> = if tp == 1 {
            let a = args.pop().expect("one rank");
            vec![g.sessions[0].run(a).map_err(|e| err(e.to_string()))?]
        } else {
            let group = self.group.clone().expect("grouped at load");
            let results: Vec<Result<Vec<Value<B>>, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = g
                    .sessions
                    .iter()
                    .zip(args)
                    .enumerate()
                    .map(|(r, (session, a))| {
                        let group = &group;
                        s.spawn(move || {
                            session.run(a).map_err(|e| {
                                // The other ranks may be waiting for this one.
                                group.poison(&format!("rank {r}: {e}"));
                                e.to_string()
                            })
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("the rank's thread panicked".into())))
                    .collect()
            });
            if results.iter().any(Result::is_err) {
                // The rank that failed first, not the ones it stopped.
                let (r, e) = results
                    .iter()
                    .enumerate()
                    .filter_map(|(r, x)| x.as_ref().err().map(|e| (r, e)))
                    .min_by_key(|(_, e)| e.contains("another rank stopped"))
                    .expect("one failed");
                let message = format!("rank {r} of {tp}: {e}");
                self.regroup();
                return Err(err(message));
            }
            results.into_iter().map(|x| x.expect("checked")).collect()
        };
        let g = &self.graphs[graph];
        let mut returned: Vec<(String, Literal)> = Vec::new();
        for (r, rank_outs) in outs.into_iter().enumerate() {
            for (i, (o, v)) in g.entry.outputs.iter().zip(rank_outs).enumerate() {
                match o.aliases_parameter {
                    Some(p) => {
                        self.state[r].insert(g.state_params[&p].clone(), v);
                    }
                    None if r == 0 => returned.push((o.name.clone(), v.to_literal())),
                    None => {
                        // Every rank computes the same tokens and counts (the
                        // logits they decide from are all-reduced): a rank
                        // that disagrees is a sharding bug, never a result.
                        let mine = v.to_literal();
                        let first = &returned.iter().find(|(n, _)| *n == o.name).expect("rank 0 returned it").1;
                        if !same_bits(first, &mine) {
                            return Err(err(format!(
                                "rank {r} of {tp} computed output {i} `{}` differently from rank 0",
                                o.name
                            )));
                        }
                    }
                }
            }
        }
        Ok(returned)
    }
}

fn same_bits(a: &Literal, b: &Literal) -> bool {
    a.shape == b.shape
        && a.dtype() == b.dtype()
        && a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(x, y)| x.to_bits() == y.to_bits())
}
