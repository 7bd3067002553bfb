//! Target profiles and the Neuron checks.
//!
//! `neuronx-cc` accepts a subset of HLO (see the Neuron notes): static
//! shapes, no control flow, plain reductions with constant inits, constant
//! exponents, no sort, no 64-bit integers (trn1 has no int64 datapath), no
//! integer matmul, and only AWS's own custom calls. The Neuron profiles
//! check a module against these rules before it is written and refuse it
//! with errors that name the instruction and the rule; the portable `xla`
//! profile checks nothing.

use crate::module::{Computation, Elem, HOp, Module, Shape};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Trn1,
    Trn2,
    Inf2,
    /// Portable HLO for any XLA backend (no Neuron restrictions).
    Xla,
}

impl Target {
    pub fn parse(s: &str) -> Option<Target> {
        match s {
            "trn1" => Some(Target::Trn1),
            "trn2" => Some(Target::Trn2),
            "inf2" => Some(Target::Inf2),
            "xla" => Some(Target::Xla),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Trn1 => "trn1",
            Target::Trn2 => "trn2",
            Target::Inf2 => "inf2",
            Target::Xla => "xla",
        }
    }

    pub fn is_neuron(self) -> bool {
        !matches!(self, Target::Xla)
    }
}

/// The largest module neuronx-cc is known to handle.
pub const MAX_INSTRUCTIONS: usize = 5_000_000;

/// One broken rule, at one instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub computation: String,
    pub instruction: String,
    /// The IR node the instruction came from, if any.
    pub origin: String,
    pub rule: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{} in %{}", self.instruction, self.computation)?;
        if !self.origin.is_empty() {
            write!(f, " (from `{}`)", self.origin)?;
        }
        write!(f, ": {}: {}", self.rule, self.detail)
    }
}

fn is_constant_like(c: &Computation, i: usize) -> bool {
    match &c.instrs[i].op {
        HOp::Constant(_) => true,
        HOp::Broadcast(_) | HOp::Plain("reshape") => is_constant_like(c, c.instrs[i].operands[0]),
        _ => false,
    }
}

fn uses_s64(s: &Shape) -> bool {
    match s {
        Shape::Array(e, _) => *e == Elem::S64,
        Shape::Tuple(parts) => parts.iter().any(uses_s64),
    }
}

/// Checks `m` against `target`'s rules; all violations are returned.
pub fn check(m: &Module, target: Target) -> Result<(), Vec<Violation>> {
    if !target.is_neuron() {
        return Ok(());
    }
    let mut v = Vec::new();
    let count = m.instruction_count();
    if count > MAX_INSTRUCTIONS {
        let e = m.entry();
        v.push(Violation {
            computation: e.name.clone(),
            instruction: e.instrs[e.root].name.clone(),
            origin: String::new(),
            rule: "instruction limit",
            detail: format!("{count} instructions, neuronx-cc handles about {MAX_INSTRUCTIONS}"),
        });
    }
    for c in &m.computations {
        for ins in &c.instrs {
            let mut bad = |rule: &'static str, detail: String| {
                v.push(Violation {
                    computation: c.name.clone(),
                    instruction: ins.name.clone(),
                    origin: ins.origin.clone(),
                    rule,
                    detail,
                })
            };
            let opcode = ins.op.opcode();
            match opcode {
                "conditional" => {
                    bad("no control flow", "conditional is not supported; specialize both branches".into())
                }
                "while" => bad(
                    "no data-dependent loops",
                    "while is not supported; unroll loops with a static trip count".into(),
                ),
                "sort" => bad("no sort", "sort is not supported; use top-k".into()),
                "rng" => bad("random numbers", "rng is not supported; use rng-bit-generator or an integer hash".into()),
                "get-dimension-size" | "set-dimension-size" => {
                    bad("static shapes", format!("{opcode} makes a dynamic shape"))
                }
                _ => {}
            }
            if uses_s64(&ins.shape) {
                bad("no 64-bit integers", format!("{} has s64 elements; narrow to s32", crate::shape_text(&ins.shape)));
            }
            match &ins.op {
                HOp::Reduce { to_apply, .. } => {
                    if ins.operands.len() != 2 || matches!(ins.shape, Shape::Tuple(_)) {
                        bad("plain reductions", "variadic reduce is not supported".into());
                    } else if !is_constant_like(c, ins.operands[1]) {
                        bad("plain reductions", "the init value must be a constant".into());
                    }
                    let r = &m.computations[*to_apply];
                    let root = r.instrs[r.root].op.opcode();
                    if !matches!(root, "add" | "multiply" | "maximum" | "minimum") || r.instrs.len() != 3 {
                        bad(
                            "plain reductions",
                            format!("reduce applies `{root}`; only add, multiply, maximum, minimum"),
                        );
                    }
                }
                HOp::Plain("power") if !is_constant_like(c, ins.operands[1]) => {
                    bad("constant exponents", "power needs a compile-time constant exponent".into())
                }
                HOp::Dot(_) if !matches!(ins.shape.elem(), Some(Elem::F32 | Elem::Bf16)) => {
                    bad("float matmul", "dot has no integer path on Neuron".into())
                }
                HOp::CustomCall { target: t, .. } if !t.starts_with("AwsNeuron") => {
                    bad("custom calls", format!("custom call `{t}` is not a Neuron one"))
                }
                _ => {}
            }
        }
    }
    if v.is_empty() { Ok(()) } else { Err(v) }
}
