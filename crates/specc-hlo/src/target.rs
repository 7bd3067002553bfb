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
                HOp::AllReduce { groups, to_apply } => {
                    if !matches!(ins.shape.elem(), Some(Elem::F32 | Elem::Bf16)) {
                        bad(
                            "float collectives",
                            format!(
                                "all-reduce of {}: neuronx-cc reduces floats only (EVRF061); carry integers as floats",
                                crate::shape_text(&ins.shape)
                            ),
                        );
                    }
                    let r = &m.computations[*to_apply];
                    if r.instrs[r.root].op.opcode() != "add" {
                        bad("float collectives", "all-reduce must sum (to_apply add)".into());
                    }
                    let all: Vec<usize> = (0..groups.iter().map(Vec::len).sum()).collect();
                    if groups.len() != 1 || groups[0] != all {
                        bad(
                            "one replica group",
                            "all-reduce must span every rank: replica_groups={{0,...,N-1}}".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::{Computation, Instr};
    use specc_ir::Literal;

    fn ins(name: &str, shape: Shape, op: HOp, operands: Vec<usize>) -> Instr {
        Instr { name: name.into(), shape, op, operands, origin: format!("node_{name}") }
    }

    fn f32s(d: &[usize]) -> Shape {
        Shape::array(Elem::F32, d)
    }

    /// A module whose entry holds `extra` after a parameter and a constant.
    fn module(extra: Vec<Instr>, reducer_root: &'static str) -> Module {
        let scalar = f32s(&[]);
        let reducer = Computation {
            name: "red".into(),
            instrs: vec![
                ins("a", scalar.clone(), HOp::Parameter(0), vec![]),
                ins("b", scalar.clone(), HOp::Parameter(1), vec![]),
                ins("r", scalar, HOp::Plain(reducer_root), vec![0, 1]),
            ],
            root: 2,
        };
        let mut instrs = vec![
            ins("p", f32s(&[4]), HOp::Parameter(0), vec![]),
            ins("c", f32s(&[]), HOp::Constant(Literal::scalar_f32(0.0)), vec![]),
        ];
        instrs.extend(extra);
        let root = instrs.len() - 1;
        Module {
            name: "m".into(),
            computations: vec![reducer, Computation { name: "main".into(), instrs, root }],
            entry: 1,
            aliases: vec![],
        }
    }

    fn rules(m: &Module) -> Vec<&'static str> {
        check(m, Target::Trn1).err().unwrap_or_default().iter().map(|v| v.rule).collect()
    }

    #[test]
    fn collectives_are_float_sums_over_every_rank() {
        let ar =
            |shape: Shape, groups: Vec<Vec<usize>>| ins("ar", shape, HOp::AllReduce { groups, to_apply: 0 }, vec![0]);
        assert_eq!(rules(&module(vec![ar(f32s(&[4]), vec![vec![0, 1]])], "add")), Vec::<&str>::new());
        let ints = ar(Shape::array(Elem::S32, &[4]), vec![vec![0, 1]]);
        assert_eq!(rules(&module(vec![ints], "add")), ["float collectives"]);
        assert_eq!(rules(&module(vec![ar(f32s(&[4]), vec![vec![0, 1]])], "maximum")), ["float collectives"]);
        assert_eq!(rules(&module(vec![ar(f32s(&[4]), vec![vec![0], vec![1]])], "add")), ["one replica group"]);
    }

    #[test]
    fn neuron_rules_name_the_instruction() {
        let sort = module(vec![ins("s", f32s(&[4]), HOp::Other("sort".into()), vec![0])], "add");
        assert_eq!(rules(&sort), ["no sort"]);
        let v = check(&sort, Target::Trn1).unwrap_err();
        assert_eq!(v[0].to_string(), "%s in %main (from `node_s`): no sort: sort is not supported; use top-k");
        assert!(check(&sort, Target::Xla).is_ok(), "the portable profile checks nothing");

        let w = module(vec![ins("w", f32s(&[4]), HOp::Other("while".into()), vec![0])], "add");
        assert_eq!(rules(&w), ["no data-dependent loops"]);
        let c = module(vec![ins("k", f32s(&[4]), HOp::Other("conditional".into()), vec![0])], "add");
        assert_eq!(rules(&c), ["no control flow"]);
        let dynamic = module(vec![ins("d", f32s(&[]), HOp::Other("get-dimension-size".into()), vec![0])], "add");
        assert_eq!(rules(&dynamic), ["static shapes"]);

        let reduce = |operands: Vec<usize>| ins("r", f32s(&[]), HOp::Reduce { dims: vec![0], to_apply: 0 }, operands);
        assert!(rules(&module(vec![reduce(vec![0, 1])], "add")).is_empty());
        assert_eq!(rules(&module(vec![reduce(vec![0, 0])], "add")), ["plain reductions"], "non-constant init");
        assert_eq!(rules(&module(vec![reduce(vec![0, 1, 0, 1])], "add")), ["plain reductions"], "variadic");
        assert_eq!(rules(&module(vec![reduce(vec![0, 1])], "divide")), ["plain reductions"], "reduce computation");

        let pow = module(vec![ins("pw", f32s(&[4]), HOp::Plain("power"), vec![0, 0])], "add");
        assert_eq!(rules(&pow), ["constant exponents"]);
        let s64 = module(vec![ins("cv", Shape::array(Elem::S64, &[4]), HOp::Plain("convert"), vec![0])], "add");
        assert_eq!(rules(&s64), ["no 64-bit integers"]);
        let cc = module(
            vec![ins(
                "cc",
                f32s(&[4]),
                HOp::CustomCall { target: "MyKernel".into(), backend_config: String::new() },
                vec![0],
            )],
            "add",
        );
        assert_eq!(rules(&cc), ["custom calls"]);
        let ok_cc = module(
            vec![ins(
                "cc",
                f32s(&[4]),
                HOp::CustomCall { target: "AwsNeuronArgMax".into(), backend_config: "0".into() },
                vec![0],
            )],
            "add",
        );
        assert!(rules(&ok_cc).is_empty());
    }
}
