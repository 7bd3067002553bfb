//! `specc estimate out/ --instance trn2.48xlarge [--tp N] [--acceptance A |
//! --from-bench bench.json]`: what a generation artifact's graphs would cost
//! on Trainium, from their IR alone (a roofline per graph, tensor-parallel
//! collectives, `specc_cost`), and the speculative K that minimizes the
//! inter-token latency. Weight values are never read, so a shape-only
//! artifact (`--weights none`) is enough.

use serde::Serialize;
use specc_artifact::{Artifact, GraphEntry};
use specc_cost::tp::{self, Resident};
use specc_cost::{ArtifactCost, Calibrate, CostParams, GraphTime, Instance, roofline};
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    #[error(transparent)]
    Artifact(#[from] specc_artifact::ArtifactError),
    #[error(transparent)]
    Cost(#[from] specc_cost::CostError),
    #[error("{0}")]
    Usage(String),
    #[error(
        "{dir} is not a generation artifact (it was compiled without --max-seq-len): specc estimate needs its prefill, decode and round graphs; recompile with --max-seq-len"
    )]
    NotGeneration { dir: String },
    #[error("{file}: {detail}")]
    Bench { file: String, detail: String },
    #[error("{0}")]
    DoesNotFit(String),
}

#[derive(Clone, Debug, Default)]
pub struct EstimateOptions {
    pub instance: String,
    pub tp: Option<usize>,
    pub acceptance: Option<f64>,
    pub from_bench: Option<PathBuf>,
    pub json: bool,
    /// Overrides `CostParams::CALIBRATED`.
    pub efficiency: Option<f64>,
    pub collective_latency_us: Option<f64>,
    /// `collective-latency=MS` or `efficiency=MS`: solve that parameter so
    /// that the decode graph takes MS milliseconds (a measured plain
    /// inter-token latency), then estimate with it.
    pub calibrate: Option<String>,
    /// `K=MS`: the per-token acceptance that a measured speculative
    /// inter-token latency of MS milliseconds at K implies.
    pub implied_acceptance: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub layers: usize,
    pub kv_heads: usize,
    pub hidden: Option<usize>,
    pub weight_bytes: u64,
    pub cache_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GraphRow {
    pub name: String,
    pub kind: String,
    pub counts: specc_cost::Counts,
    pub time: GraphTime,
}

#[derive(Clone, Debug, Serialize)]
pub struct Prefill {
    pub bucket: usize,
    pub target_ms: f64,
    pub draft_ms: Option<f64>,
    /// Target prefill plus the draft's, when there is a draft.
    pub time_to_first_token_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KRow {
    pub k: usize,
    pub round_graph: String,
    pub round_ms: f64,
    /// The per-token acceptance at which this K only breaks even with plain
    /// decoding (None: it cannot, even if everything is accepted).
    pub break_even_acceptance: Option<f64>,
    pub expected_tokens: Option<f64>,
    pub inter_token_latency_ms: Option<f64>,
    pub speedup: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Speculation {
    /// Where the acceptance came from.
    pub acceptance: String,
    pub per_k: Vec<KRow>,
    pub best_k: Option<usize>,
    pub best_inter_token_latency_ms: Option<f64>,
    pub best_speedup: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    pub parameter: String,
    pub measured_ms: f64,
    pub value: f64,
}

/// What a measured speculative inter-token latency implies.
#[derive(Clone, Debug, Serialize)]
pub struct Implied {
    pub k: usize,
    pub measured_ms: f64,
    pub round_ms: f64,
    /// round / measured.
    pub tokens_per_round: f64,
    /// None when the tokens per round fall outside [1, K+1] (the model and
    /// the measurement disagree beyond what any acceptance explains).
    pub acceptance: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    pub artifact: String,
    pub instance: Instance,
    pub instance_description: String,
    pub dtype: String,
    /// Which peak the dots were put against.
    pub matmul_peak: String,
    pub tp: usize,
    /// The tp the artifact was compiled for (1: unsharded, split by the model).
    pub compiled_tp: usize,
    pub tp_choice: String,
    pub rank_resident_bytes: u64,
    pub rank_hbm_bytes: u64,
    pub params: CostParams,
    pub calibration: Option<Calibration>,
    pub models: Vec<ModelSummary>,
    pub graphs: Vec<GraphRow>,
    pub prefill: Vec<Prefill>,
    pub plain_inter_token_latency_ms: f64,
    /// How a round proposes: `draft` (fused_k{K}) or `prompt lookup` (verify_k{K}).
    pub proposer: String,
    pub speculation: Vec<Speculation>,
    pub implied: Vec<Implied>,
}

const GIB: f64 = (1u64 << 30) as f64;

/// Expected tokens per round for each K of one acceptance profile.
enum Acceptance {
    /// A per-token rate (the formula).
    Rate(f64),
    /// Measured per-position rates (position i accepted, per round: the
    /// cumulative probability), extended geometrically with `tail` beyond
    /// the measured positions.
    Positions { rates: Vec<f64>, tail: f64 },
}

impl Acceptance {
    fn tokens(&self, k: usize) -> f64 {
        match self {
            Acceptance::Rate(a) => roofline::tokens_per_round(*a, k),
            Acceptance::Positions { rates, tail } => {
                let mut e = 1.0;
                let mut last = 1.0;
                for i in 0..k {
                    last = match rates.get(i) {
                        Some(r) => *r,
                        None => last * tail,
                    };
                    e += last;
                }
                e
            }
        }
    }
}

fn parse_calibrate(s: &str) -> Result<(Calibrate, f64), EstimateError> {
    let bad = || {
        EstimateError::Usage(format!(
            "--calibrate {s}: give collective-latency=MS or efficiency=MS (a measured plain inter-token latency in milliseconds)"
        ))
    };
    let (what, ms) = s.split_once('=').ok_or_else(bad)?;
    let what = match what.trim() {
        "collective-latency" => Calibrate::CollectiveLatency,
        "efficiency" => Calibrate::Efficiency,
        _ => return Err(bad()),
    };
    let ms: f64 = ms.trim().parse().map_err(|_| bad())?;
    if !(ms.is_finite() && ms > 0.0) {
        return Err(bad());
    }
    Ok((what, ms))
}

fn parse_implied(s: &str) -> Result<(usize, f64), EstimateError> {
    let bad = || {
        EstimateError::Usage(format!(
            "--implied-acceptance {s}: give K=MS, a measured speculative inter-token latency in milliseconds at K"
        ))
    };
    let (k, ms) = s.split_once('=').ok_or_else(bad)?;
    let k: usize = k.trim().parse().map_err(|_| bad())?;
    let ms: f64 = ms.trim().parse().map_err(|_| bad())?;
    if k == 0 || !(ms.is_finite() && ms > 0.0) {
        return Err(bad());
    }
    Ok((k, ms))
}

/// The acceptance profiles of a `specc bench --json` report: one per domain.
fn bench_profiles(path: &Path) -> Result<Vec<(String, Acceptance)>, EstimateError> {
    let file = path.display().to_string();
    let err = |detail: String| EstimateError::Bench { file: file.clone(), detail };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON ({e}); give a `specc bench --json` report")))?;
    let domains =
        v["domains"].as_array().ok_or_else(|| err("no `domains` array: give a `specc bench --json` report".into()))?;
    let mut out = Vec::new();
    for d in domains {
        let name = d["domain"].as_str().unwrap_or("?").to_string();
        let label = match d["synthetic_acceptance"].as_f64() {
            Some(a) => format!("{name} (SYNTHETIC acceptance {a})"),
            None => name.clone(),
        };
        // The fixed-K run with the most measured positions.
        let runs = d["speculative"].as_array().cloned().unwrap_or_default();
        let best = runs
            .iter()
            .filter(|r| r["k"].as_u64().is_some())
            .max_by_key(|r| r["accepted_per_position"].as_array().map_or(0, |a| a.len()));
        let Some(run) = best else {
            return Err(err(format!("domain `{name}` has no fixed-K speculative run")));
        };
        let k = run["k"].as_u64().unwrap_or(0) as usize;
        let rates: Vec<f64> = run["accepted_per_position"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default();
        let alpha = run["alpha"]
            .as_f64()
            .or_else(|| run["mean_acceptance_length"].as_f64().map(|l| roofline::solve_acceptance(l, k.max(1))));
        let profile = if !rates.is_empty() {
            // Beyond the measured positions, each further one is accepted
            // with the last measured conditional rate (or alpha).
            let n = rates.len();
            let conditional = if n >= 2 && rates[n - 2] > 0.0 { rates[n - 1] / rates[n - 2] } else { rates[0] };
            let tail = alpha.unwrap_or(conditional).clamp(0.0, 1.0);
            let label = format!(
                "{label}: measured per-position acceptance at K={k} [{}]; a K above {n} extends it with a={tail:.3}",
                rates.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
            );
            (label, Acceptance::Positions { rates, tail })
        } else if let Some(a) = alpha {
            (format!("{label}: a={a:.3} solved from the mean acceptance length at K={k}"), Acceptance::Rate(a))
        } else {
            return Err(err(format!("domain `{name}` reports no acceptance (no per-position rates, no alpha)")));
        };
        out.push(profile);
    }
    if out.is_empty() {
        return Err(err("the report has no domains".into()));
    }
    Ok(out)
}

/// The tp to estimate at: an artifact compiled with `--tp N` runs at N (its
/// resident bytes are already one rank's); an unsharded one at `--tp`, else
/// the smallest degree at which a rank holds its share.
fn choose_tp(
    o: &EstimateOptions,
    inst: &Instance,
    resident: &[Resident],
    built_tp: usize,
) -> Result<(usize, String), EstimateError> {
    let have = inst.rank_hbm() as f64 / GIB;
    if built_tp > 1 {
        if o.tp.is_some_and(|t| t != built_tp) {
            return Err(EstimateError::Usage(format!(
                "--tp {}: this artifact was compiled with --tp {built_tp}; recompile it for another tp",
                o.tp.unwrap_or(0)
            )));
        }
        if built_tp > inst.ranks() {
            return Err(EstimateError::Usage(format!(
                "this artifact was compiled with --tp {built_tp}, but {} has {} NeuronCores (tensor-parallel ranks)",
                inst.name,
                inst.ranks()
            )));
        }
        let need = tp::rank_resident(resident, 1) as f64 / GIB;
        if tp::rank_resident(resident, 1) > inst.rank_hbm() {
            return Err(EstimateError::DoesNotFit(format!(
                "at the artifact's tp {built_tp} a rank needs {need:.1} GiB for weights and KV caches but has {have:.1} GiB on {}",
                inst.name
            )));
        }
        return Ok((
            built_tp,
            format!(
                "tp {built_tp} (compiled): {need:.1} GiB of {have:.1} GiB per rank, costed from the rank programs themselves (their all-reduces counted)"
            ),
        ));
    }
    let need = |tp: usize| tp::rank_resident(resident, tp) as f64 / GIB;
    let fitting = tp::smallest_fitting(resident, inst);
    match o.tp {
        Some(tp) => {
            if tp > inst.ranks() {
                return Err(EstimateError::Usage(format!(
                    "--tp {tp}: {} has {} NeuronCores (tensor-parallel ranks); the largest tp there is {}",
                    inst.name,
                    inst.ranks(),
                    inst.ranks()
                )));
            }
            if !inst.tp_degrees.contains(&tp) {
                return Err(EstimateError::Usage(format!(
                    "--tp {tp} is not a tensor-parallel degree used on {}: use one of {}",
                    inst.name,
                    inst.tp_degrees.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            if tp::rank_resident(resident, tp) > inst.rank_hbm() {
                let fix = match fitting {
                    Some(t) => format!("it needs --tp {t} (the smallest that fits, {:.1} GiB per rank)", need(t)),
                    None => format!(
                        "it does not fit on {} at any tp (at tp {} a rank needs {:.1} GiB)",
                        inst.name,
                        inst.ranks(),
                        need(inst.ranks())
                    ),
                };
                return Err(EstimateError::DoesNotFit(format!(
                    "the model does not fit at --tp {tp} on {}: a rank needs {:.1} GiB for weights and KV caches but has {have:.1} GiB; {fix}",
                    inst.name,
                    need(tp)
                )));
            }
            Ok((tp, format!("tp {tp} (given): {:.1} GiB of {have:.1} GiB per rank{}", need(tp), single_core_note(tp))))
        }
        None => match fitting {
            Some(tp) => Ok((
                tp,
                format!(
                    "tp {tp}: the smallest of {} whose weights and KV caches fit a rank ({:.1} GiB of {have:.1} GiB); --tp chooses another{}",
                    inst.tp_degrees.iter().map(|t| t.to_string()).collect::<Vec<_>>().join("/"),
                    need(tp),
                    single_core_note(tp)
                ),
            )),
            None => Err(EstimateError::DoesNotFit(format!(
                "the model does not fit on {} at any tp: even at tp {} a rank needs {:.1} GiB for weights and KV caches but has {have:.1} GiB",
                inst.name,
                inst.ranks(),
                need(inst.ranks())
            ))),
        },
    }
}

/// An unsharded artifact estimated past tp 1 is split analytically: say so,
/// and how to get the real rank programs.
fn single_core_note(tp: usize) -> String {
    if tp == 1 {
        return String::new();
    }
    format!(
        "\nnote: this artifact is compiled for one rank; tp {tp} is modelled (weights split, two all-reduces per layer); \
         `specc compile --tp {tp}` builds the rank programs, and their estimate counts their own collectives"
    )
}

/// Greedy graphs only: the `_sample` variants cost about the same and are
/// not what inter-token latency is quoted for.
fn counted(g: &GraphEntry) -> bool {
    !g.name.ends_with("_sample")
}

pub fn estimate_report(dir: &Path, o: &EstimateOptions) -> Result<Estimate, EstimateError> {
    let inst = specc_cost::instance(&o.instance).ok_or_else(|| {
        EstimateError::Usage(format!(
            "--instance {}: unknown instance; use one of {}",
            o.instance,
            specc_cost::hardware::instance_names().join(", ")
        ))
    })?;
    if o.acceptance.is_some() && o.from_bench.is_some() {
        return Err(EstimateError::Usage("give --acceptance or --from-bench, not both".into()));
    }
    if let Some(a) = o.acceptance
        && !(0.0..=1.0).contains(&a)
    {
        return Err(EstimateError::Usage(format!("--acceptance {a}: give a per-token rate between 0 and 1")));
    }
    let mut params = CostParams::CALIBRATED;
    if let Some(e) = o.efficiency {
        if !(e > 0.0 && e <= 1.0) {
            return Err(EstimateError::Usage(format!("--efficiency {e}: give a fraction in (0, 1]")));
        }
        params.efficiency = e;
    }
    if let Some(us) = o.collective_latency_us {
        if !(us >= 0.0 && us.is_finite()) {
            return Err(EstimateError::Usage(format!("--collective-latency-us {us}: give microseconds, 0 or more")));
        }
        params.collective_latency_s = us * 1e-6;
    }
    let calibrate = o.calibrate.as_deref().map(parse_calibrate).transpose()?;
    let implied_args = o.implied_acceptance.iter().map(|s| parse_implied(s)).collect::<Result<Vec<_>, _>>()?;
    let profiles: Vec<(String, Acceptance)> = match (&o.from_bench, o.acceptance) {
        (Some(f), _) => bench_profiles(f)?,
        (None, Some(a)) => vec![(format!("a={a} per token (--acceptance)"), Acceptance::Rate(a))],
        (None, None) => vec![],
    };

    let artifact = Artifact::open(dir)?;
    let shown = dir.display().to_string();
    let Some(spec) = artifact.manifest.speculation.clone() else {
        return Err(EstimateError::NotGeneration { dir: shown });
    };
    let cost: ArtifactCost = specc_cost::from_artifact(&artifact, &counted)?;
    let (tp, tp_choice) = choose_tp(o, &inst, &cost.resident, artifact.manifest.tp)?;
    let graph =
        |name: &str| cost.graph(name).ok_or_else(|| EstimateError::Usage(format!("{shown} has no graph `{name}`")));
    let decode = graph("target_decode")?;
    let calibration = match calibrate {
        None => None,
        Some((what, ms)) => {
            let value = specc_cost::calibrate(&decode.counts, &inst, tp, &params, what, ms * 1e-3)
                .map_err(|e| EstimateError::Usage(format!("--calibrate: {e}")))?;
            let parameter = match what {
                Calibrate::CollectiveLatency => {
                    params.collective_latency_s = value;
                    "collective latency (seconds)"
                }
                Calibrate::Efficiency => {
                    params.efficiency = value;
                    "efficiency"
                }
            };
            Some(Calibration { parameter: parameter.into(), measured_ms: ms, value })
        }
    };
    let time = |name: &str| -> Result<GraphTime, EstimateError> {
        Ok(specc_cost::graph_time(&graph(name)?.counts, &inst, tp, &params))
    };
    let graphs: Vec<GraphRow> = cost
        .graphs
        .iter()
        .map(|g| GraphRow {
            name: g.name.clone(),
            kind: g.kind.clone(),
            counts: g.counts.clone(),
            time: specc_cost::graph_time(&g.counts, &inst, tp, &params),
        })
        .collect();
    let mut prefill = Vec::new();
    for &b in &spec.buckets {
        let target_ms = time(&format!("target_prefill_{b}"))?.total_s * 1e3;
        let draft_ms = if spec.draft { Some(time(&format!("draft_prefill_{b}"))?.total_s * 1e3) } else { None };
        prefill.push(Prefill {
            bucket: b,
            target_ms,
            draft_ms,
            time_to_first_token_ms: target_ms + draft_ms.unwrap_or(0.0),
        });
    }
    let plain = time("target_decode")?.total_s * 1e3;
    let round_name = |k: usize| if spec.draft { format!("fused_k{k}") } else { format!("verify_k{k}") };
    let mut rounds = Vec::new();
    for &k in &spec.ks {
        rounds.push((k, round_name(k), time(&round_name(k))?.total_s * 1e3));
    }
    let break_even = |k: usize, round: f64| {
        let need = round / plain;
        (need <= (k + 1) as f64).then(|| if need <= 1.0 { 0.0 } else { roofline::solve_acceptance(need, k) })
    };
    let mut speculation = Vec::new();
    let bare = [(String::from("none given (--acceptance or --from-bench): break-even acceptance only"), None)];
    let with: Vec<(String, Option<&Acceptance>)> = profiles.iter().map(|(l, a)| (l.clone(), Some(a))).collect();
    for (label, acc) in if profiles.is_empty() { bare.to_vec() } else { with } {
        let per_k: Vec<KRow> = rounds
            .iter()
            .map(|(k, name, round)| {
                let e = acc.map(|a| a.tokens(*k));
                let itl = e.map(|e| round / e);
                KRow {
                    k: *k,
                    round_graph: name.clone(),
                    round_ms: *round,
                    break_even_acceptance: break_even(*k, *round),
                    expected_tokens: e,
                    inter_token_latency_ms: itl,
                    speedup: itl.map(|t| plain / t),
                }
            })
            .collect();
        let best =
            per_k.iter().filter_map(|r| r.inter_token_latency_ms.map(|t| (r.k, t))).min_by(|a, b| a.1.total_cmp(&b.1));
        speculation.push(Speculation {
            acceptance: label,
            best_k: best.map(|b| b.0),
            best_inter_token_latency_ms: best.map(|b| b.1),
            best_speedup: best.map(|b| plain / b.1),
            per_k,
        });
    }
    let mut implied = Vec::new();
    for (k, measured_ms) in implied_args {
        let Some((_, _, round_ms)) = rounds.iter().find(|r| r.0 == k) else {
            return Err(EstimateError::Usage(format!(
                "--implied-acceptance {k}=...: the artifact has no round graph for K={k} (it has K in {:?})",
                spec.ks
            )));
        };
        let tokens_per_round = round_ms / measured_ms;
        let acceptance =
            (1.0..=(k + 1) as f64).contains(&tokens_per_round).then(|| roofline::solve_acceptance(tokens_per_round, k));
        implied.push(Implied { k, measured_ms, round_ms: *round_ms, tokens_per_round, acceptance });
    }
    let models = cost
        .resident
        .iter()
        .map(|r| ModelSummary {
            name: r.model.clone(),
            layers: r.layers,
            kv_heads: r.kv_heads,
            hidden: cost.graphs.iter().filter_map(|g| g.counts.models.get(&r.model).and_then(|m| m.hidden)).max(),
            weight_bytes: r.weight_bytes,
            cache_bytes: r.cache_bytes,
        })
        .collect();
    let bf16 = cost.dtype == "bf16";
    Ok(Estimate {
        artifact: shown,
        instance_description: inst.describe(),
        instance: inst,
        matmul_peak: if bf16 {
            "bf16 artifact: dots with bf16 operands (the weight matmuls) at the bf16 peak, the f32 ones (attention) at the fp32 peak".into()
        } else {
            "f32 artifact: every dot at the fp32 peak".into()
        },
        dtype: cost.dtype.clone(),
        tp,
        compiled_tp: artifact.manifest.tp,
        tp_choice,
        rank_resident_bytes: tp::rank_resident(&cost.resident, tp::remaining_split(artifact.manifest.tp, tp)),
        rank_hbm_bytes: inst.rank_hbm(),
        params,
        calibration,
        models,
        graphs,
        prefill,
        plain_inter_token_latency_ms: plain,
        proposer: if spec.draft { "draft (fused_k{K})".into() } else { "prompt lookup (verify_k{K})".into() },
        speculation,
        implied,
    })
}

fn gb(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0} ms")
    } else if x >= 1.0 {
        format!("{x:.2} ms")
    } else {
        format!("{:.1} us", x * 1e3)
    }
}

impl Estimate {
    pub fn text(&self) -> String {
        let mut s = String::new();
        writeln!(s, "specc estimate {} (roofline model; no weight is read)", self.artifact).unwrap();
        writeln!(s, "{}", self.instance_description).unwrap();
        writeln!(s, "{}", self.matmul_peak).unwrap();
        writeln!(s, "{}", self.tp_choice).unwrap();
        let p = &self.params;
        writeln!(
            s,
            "model: time = max(compute, memory) / efficiency {:.3} + {} x ({:.1} us + ring transfer); the default fixed cost per collective is calibrated on Llama-3.1-405B's published inter-token latency (BENCHMARKS.md)",
            p.efficiency,
            if self.compiled_tp > 1 {
                "each all-reduce of the rank program"
            } else {
                "2 all-reduces per layer per pass"
            },
            p.collective_latency_s * 1e6
        )
        .unwrap();
        if let Some(c) = &self.calibration {
            let value = if c.parameter.starts_with("collective") {
                format!("{:.2} us", c.value * 1e6)
            } else {
                format!("{:.4}", c.value)
            };
            writeln!(s, "calibrated here: {} = {value} so that target_decode takes {} ms", c.parameter, c.measured_ms)
                .unwrap();
        }
        for m in &self.models {
            writeln!(
                s,
                "  {}: {} layers, {} KV heads, hidden {}, weights {}, KV caches {}",
                m.name,
                m.layers,
                m.kv_heads,
                m.hidden.map_or("?".into(), |h| h.to_string()),
                gb(m.weight_bytes as f64),
                gb(m.cache_bytes as f64)
            )
            .unwrap();
        }
        writeln!(s, "\nper graph (one execution; bytes per rank at tp {}):", self.tp).unwrap();
        writeln!(
            s,
            "| graph | GFLOP dot (bf16 + f32) | GFLOP other | weights read | cache read / written | rank compute | rank memory | collectives | time |\n|---|---|---|---|---|---|---|---|---|"
        )
        .unwrap();
        for g in &self.graphs {
            let c = &g.counts;
            let sr: u64 = c.models.values().map(|m| m.state_bytes_read).sum();
            let sw: u64 = c.models.values().map(|m| m.state_bytes_written).sum();
            writeln!(
                s,
                "| {} | {:.1} ({:.1} + {:.1}) | {:.2} | {} | {} / {} | {} | {} | {} x, {} | **{}** ({}) |",
                g.name,
                c.dot_flops() as f64 / 1e9,
                c.dot_flops_bf16 as f64 / 1e9,
                c.dot_flops_f32 as f64 / 1e9,
                c.other_flops as f64 / 1e9,
                gb(c.weight_bytes_read() as f64),
                gb(sr as f64),
                gb(sw as f64),
                ms(g.time.compute_s * 1e3),
                ms(g.time.memory_s * 1e3),
                g.time.collectives.count,
                ms(g.time.collectives.seconds * 1e3),
                ms(g.time.total_s * 1e3),
                g.time.bound
            )
            .unwrap();
        }
        writeln!(s, "\nprefill (time to first token):").unwrap();
        for p in &self.prefill {
            match p.draft_ms {
                Some(d) => writeln!(
                    s,
                    "  bucket {}: {} (target {} + draft {})",
                    p.bucket,
                    ms(p.time_to_first_token_ms),
                    ms(p.target_ms),
                    ms(d)
                ),
                None => writeln!(s, "  bucket {}: {}", p.bucket, ms(p.time_to_first_token_ms)),
            }
            .unwrap();
        }
        writeln!(s, "\ninter-token latency, plain (target_decode): {}", ms(self.plain_inter_token_latency_ms)).unwrap();
        for sp in &self.speculation {
            writeln!(s, "\nspeculative, proposals by {}; acceptance: {}", self.proposer, sp.acceptance).unwrap();
            writeln!(
                s,
                "| K | round | break-even acceptance | expected tokens/round | inter-token latency | speedup |\n|---|---|---|---|---|---|"
            )
            .unwrap();
            for r in &sp.per_k {
                let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".to_string(), f);
                writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.k,
                    ms(r.round_ms),
                    r.break_even_acceptance.map_or("never".to_string(), |a| format!("{a:.3}")),
                    opt(r.expected_tokens, &|e| format!("{e:.2}")),
                    opt(r.inter_token_latency_ms, &|t| ms(t)),
                    opt(r.speedup, &|x| format!("{x:.2}x"))
                )
                .unwrap();
            }
            if let (Some(k), Some(t), Some(x)) = (sp.best_k, sp.best_inter_token_latency_ms, sp.best_speedup) {
                let verdict = if x > 1.0 { "" } else { " (speculation does not pay: decode plainly)" };
                writeln!(s, "best K: {k}, inter-token latency {} ({x:.2}x plain){verdict}", ms(t)).unwrap();
            }
        }
        for i in &self.implied {
            match i.acceptance {
                Some(a) => writeln!(
                    s,
                    "\nimplied by a measured speculative inter-token latency of {} at K={}: the round takes {}, so {:.2} tokens per round: per-token acceptance a = {a:.3}",
                    ms(i.measured_ms), i.k, ms(i.round_ms), i.tokens_per_round
                ),
                None => writeln!(
                    s,
                    "\na measured speculative inter-token latency of {} at K={} would need {:.2} tokens per round (round {}): outside 1..{}, no acceptance explains it",
                    ms(i.measured_ms), i.k, i.tokens_per_round, ms(i.round_ms), i.k + 1
                ),
            }
            .unwrap();
        }
        s
    }
}

pub fn estimate(dir: &Path, o: &EstimateOptions) -> Result<String, EstimateError> {
    let e = estimate_report(dir, o)?;
    Ok(if o.json { serde_json::to_string_pretty(&e).expect("an estimate always serializes") + "\n" } else { e.text() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(gib: u64) -> Vec<Resident> {
        vec![Resident { model: "target".into(), weight_bytes: gib << 30, cache_bytes: 1 << 30, kv_heads: 8, layers: 4 }]
    }

    #[test]
    fn the_smallest_fitting_tp_is_chosen_and_a_too_small_one_names_the_fix() {
        let inst = specc_cost::instance("trn2.48xlarge").unwrap();
        // 800 GiB of weights: 25 GiB per rank at tp 32 (24 GiB each), 12.5 at 64.
        let (tp, why) = choose_tp(&EstimateOptions::default(), &inst, &resident(800), 1).unwrap();
        assert_eq!(tp, 64);
        assert!(why.contains("smallest"), "{why}");
        let o = EstimateOptions { tp: Some(8), ..Default::default() };
        let e = choose_tp(&o, &inst, &resident(800), 1).unwrap_err().to_string();
        assert!(e.contains("does not fit at --tp 8") && e.contains("it needs --tp 64"), "{e}");
        let e = choose_tp(&EstimateOptions::default(), &inst, &resident(4000), 1).unwrap_err().to_string();
        assert!(e.contains("does not fit on trn2.48xlarge at any tp"), "{e}");
        let o = EstimateOptions { tp: Some(128), ..Default::default() };
        let e = choose_tp(&o, &inst, &resident(1), 1).unwrap_err().to_string();
        assert!(e.contains("has 64 NeuronCores"), "{e}");
    }

    #[test]
    fn measured_positions_give_the_expected_tokens_and_extend_geometrically() {
        let p = Acceptance::Positions { rates: vec![0.8, 0.6], tail: 0.5 };
        assert!((p.tokens(1) - 1.8).abs() < 1e-12);
        assert!((p.tokens(2) - 2.4).abs() < 1e-12);
        assert!((p.tokens(3) - 2.7).abs() < 1e-12);
        assert!((Acceptance::Rate(0.0).tokens(5) - 1.0).abs() < 1e-12);
        assert!(parse_calibrate("efficiency=12.5").is_ok());
        assert!(parse_calibrate("efficiency=-1").is_err());
        assert_eq!(parse_implied("7=8.27").unwrap(), (7, 8.27));
        assert!(parse_implied("0=8").is_err());
    }
}
