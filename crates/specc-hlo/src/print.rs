//! The two printed forms of a [`Module`]: HLO text (for people, tests and
//! XLA's parser) and a serialized `HloModuleProto` (for neuronx-cc).
//!
//! Both walk the same module in the same order and derive every attribute
//! from the same fields. Layouts are row-major (`minor_to_major` = the dims
//! reversed); instruction and computation ids are unique in the module.

use crate::module::{Computation, HOp, Instr, Module, Shape};
use crate::proto as pb;
use specc_ir::{Literal, LiteralData};
use std::fmt::Write;

fn layout(dims: &[usize]) -> String {
    let v: Vec<String> = (0..dims.len()).rev().map(|d| d.to_string()).collect();
    format!("{{{}}}", v.join(","))
}

pub fn shape_text(s: &Shape) -> String {
    match s {
        Shape::Array(e, dims) => {
            let d: Vec<String> = dims.iter().map(|x| x.to_string()).collect();
            let l = if dims.is_empty() { String::new() } else { layout(dims) };
            format!("{}[{}]{l}", e.name(), d.join(","))
        }
        Shape::Tuple(parts) => {
            let p: Vec<String> = parts.iter().map(shape_text).collect();
            format!("({})", p.join(", "))
        }
    }
}

fn float_text(v: f32) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        // Nine significant digits identify every f32.
        format!("{v:.8e}")
    }
}

fn literal_text(l: &Literal) -> String {
    let items: Vec<String> = match &l.data {
        LiteralData::Bool(v) => v.iter().map(|b| b.to_string()).collect(),
        LiteralData::I32(v) => v.iter().map(|x| x.to_string()).collect(),
        LiteralData::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        LiteralData::F32(v) => v.iter().map(|&x| float_text(x)).collect(),
        LiteralData::BF16(v) => v.iter().map(|&x| float_text(specc_ir::bf16_to_f32(x))).collect(),
    };
    if l.shape.is_empty() {
        return items[0].clone();
    }
    fn nest(items: &[String], dims: &[usize]) -> String {
        if dims.len() == 1 {
            return format!("{{{}}}", items.join(", "));
        }
        let inner: usize = dims[1..].iter().product();
        let parts: Vec<String> = (0..dims[0]).map(|i| nest(&items[i * inner..(i + 1) * inner], &dims[1..])).collect();
        if parts.is_empty() { "{}".into() } else { format!("{{ {} }}", parts.join(", ")) }
    }
    nest(&items, &l.shape)
}

fn list(v: &[usize]) -> String {
    let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("{{{}}}", s.join(","))
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn attrs(op: &HOp, m: &Module) -> String {
    match op {
        HOp::Parameter(_) | HOp::Constant(_) | HOp::Plain(_) | HOp::Other(_) => String::new(),
        HOp::Compare(d) => format!(", direction={}", d.name()),
        HOp::Dot(d) => {
            let mut s = String::new();
            if !d.lhs_batch.is_empty() {
                write!(s, ", lhs_batch_dims={}, rhs_batch_dims={}", list(&d.lhs_batch), list(&d.rhs_batch)).unwrap();
            }
            write!(
                s,
                ", lhs_contracting_dims={}, rhs_contracting_dims={}",
                list(&d.lhs_contract),
                list(&d.rhs_contract)
            )
            .unwrap();
            s
        }
        HOp::Reduce { dims, to_apply } => {
            format!(", dimensions={}, to_apply=%{}", list(dims), m.computations[*to_apply].name)
        }
        HOp::AllReduce { groups, to_apply } => {
            let groups: Vec<String> = groups.iter().map(|g| list(g)).collect();
            format!(", replica_groups={{{}}}, to_apply=%{}", groups.join(","), m.computations[*to_apply].name)
        }
        HOp::Broadcast(d) | HOp::Transpose(d) | HOp::Reverse(d) => format!(", dimensions={}", list(d)),
        HOp::Slice(s) => {
            let parts: Vec<String> = s.iter().map(|(a, b, c)| format!("[{a}:{b}:{c}]")).collect();
            format!(", slice={{{}}}", parts.join(", "))
        }
        HOp::Concatenate(a) => format!(", dimensions={{{a}}}"),
        HOp::Pad(p) => {
            let parts: Vec<String> = p.iter().map(|(l, h)| format!("{l}_{h}")).collect();
            format!(", padding={}", parts.join("x"))
        }
        HOp::Iota(a) => format!(", iota_dimension={a}"),
        HOp::Gather { offset_dims, collapsed_slice_dims, start_index_map, index_vector_dim, slice_sizes } => format!(
            ", offset_dims={}, collapsed_slice_dims={}, start_index_map={}, index_vector_dim={index_vector_dim}, slice_sizes={}",
            list(offset_dims),
            list(collapsed_slice_dims),
            list(start_index_map),
            list(slice_sizes)
        ),
        HOp::DynamicSlice(s) => format!(", dynamic_slice_sizes={}", list(s)),
        HOp::GetTupleElement(i) => format!(", index={i}"),
        HOp::CustomCall { target, backend_config } => {
            format!(", custom_call_target=\"{}\", backend_config=\"{}\"", quote(target), quote(backend_config))
        }
    }
}

fn instr_text(c: &Computation, i: usize, ins: &Instr, m: &Module) -> String {
    let root = if i == c.root { "ROOT " } else { "" };
    let operands: Vec<String> = ins.operands.iter().map(|&o| format!("%{}", c.instrs[o].name)).collect();
    let inside = match &ins.op {
        HOp::Parameter(n) => n.to_string(),
        HOp::Constant(l) => literal_text(l),
        _ => operands.join(", "),
    };
    let meta = if ins.origin.is_empty() {
        String::new()
    } else {
        format!(", metadata={{op_name=\"{}\"}}", quote(&ins.origin))
    };
    format!(
        "  {root}%{} = {} {}({inside}){}{meta}",
        ins.name,
        shape_text(&ins.shape),
        ins.op.opcode(),
        attrs(&ins.op, m)
    )
}

fn program_shape(c: &Computation) -> (Vec<Shape>, Shape) {
    let params = c.params().iter().map(|&p| c.instrs[p].shape.clone()).collect();
    (params, c.instrs[c.root].shape.clone())
}

/// HLO text that XLA's parser reads.
pub fn to_text(m: &Module) -> String {
    let mut out = String::new();
    let (params, result) = program_shape(m.entry());
    let ps: Vec<String> = params.iter().map(shape_text).collect();
    write!(out, "HloModule {}, entry_computation_layout={{({})->{}}}", m.name, ps.join(", "), shape_text(&result))
        .unwrap();
    if !m.aliases.is_empty() {
        let a: Vec<String> =
            m.aliases.iter().map(|a| format!("{{{}}}: ({}, {{}}, must-alias)", a.output, a.param)).collect();
        write!(out, ", input_output_alias={{ {} }}", a.join(", ")).unwrap();
    }
    out.push_str("\n\n");
    for (ci, c) in m.computations.iter().enumerate() {
        let entry = if ci == m.entry { "ENTRY " } else { "" };
        writeln!(out, "{entry}%{} {{", c.name).unwrap();
        for (i, ins) in c.instrs.iter().enumerate() {
            writeln!(out, "{}", instr_text(c, i, ins, m)).unwrap();
        }
        out.push_str("}\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn shape_proto(s: &Shape) -> pb::ShapeProto {
    match s {
        Shape::Array(e, dims) => pb::ShapeProto {
            element_type: e.primitive(),
            dimensions: dims.iter().map(|&d| d as i64).collect(),
            tuple_shapes: vec![],
            layout: Some(pb::LayoutProto { minor_to_major: (0..dims.len() as i64).rev().collect() }),
        },
        Shape::Tuple(parts) => pb::ShapeProto {
            element_type: pb::primitive::TUPLE,
            dimensions: vec![],
            tuple_shapes: parts.iter().map(shape_proto).collect(),
            layout: None,
        },
    }
}

fn literal_proto(l: &Literal, shape: &Shape) -> pb::LiteralProto {
    let mut p = pb::LiteralProto { shape: Some(shape_proto(shape)), ..Default::default() };
    match &l.data {
        LiteralData::Bool(v) => p.preds = v.clone(),
        LiteralData::I32(v) => p.s32s = v.clone(),
        LiteralData::I64(v) => p.s64s = v.clone(),
        LiteralData::F32(v) => p.f32s = v.clone(),
        LiteralData::BF16(v) => p.bf16s = v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
    p
}

fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

fn instr_proto(c: &Computation, ins: &Instr, id: i64, first_id: i64, comp_ids: &[i64]) -> pb::HloInstructionProto {
    let mut p = pb::HloInstructionProto {
        name: ins.name.clone(),
        opcode: ins.op.opcode().to_string(),
        shape: Some(shape_proto(&ins.shape)),
        id,
        operand_ids: ins.operands.iter().map(|&o| first_id + o as i64).collect(),
        ..Default::default()
    };
    if !ins.origin.is_empty() {
        p.metadata = Some(pb::OpMetadata { op_type: String::new(), op_name: ins.origin.clone() });
    }
    match &ins.op {
        HOp::Parameter(n) => p.parameter_number = *n as i64,
        HOp::Constant(l) => p.literal = Some(literal_proto(l, &ins.shape)),
        HOp::Plain(_) | HOp::Other(_) => {}
        HOp::Compare(d) => p.comparison_direction = d.name().to_string(),
        HOp::Dot(d) => {
            p.dot_dimension_numbers = Some(pb::DotDimensionNumbers {
                lhs_contracting_dimensions: to_i64(&d.lhs_contract),
                rhs_contracting_dimensions: to_i64(&d.rhs_contract),
                lhs_batch_dimensions: to_i64(&d.lhs_batch),
                rhs_batch_dimensions: to_i64(&d.rhs_batch),
            })
        }
        HOp::Reduce { dims, to_apply } => {
            p.dimensions = to_i64(dims);
            p.called_computation_ids = vec![comp_ids[*to_apply]];
        }
        HOp::AllReduce { groups, to_apply } => {
            p.replica_groups = groups.iter().map(|g| pb::ReplicaGroup { replica_ids: to_i64(g) }).collect();
            p.called_computation_ids = vec![comp_ids[*to_apply]];
        }
        HOp::Broadcast(d) | HOp::Transpose(d) | HOp::Reverse(d) => p.dimensions = to_i64(d),
        HOp::Slice(s) => {
            p.slice_dimensions = s
                .iter()
                .map(|&(a, b, c)| pb::SliceDimensions { start: a as i64, limit: b as i64, stride: c as i64 })
                .collect()
        }
        HOp::Concatenate(a) => p.dimensions = vec![*a as i64],
        HOp::Pad(pads) => {
            p.padding_config = Some(pb::PaddingConfig {
                dimensions: pads
                    .iter()
                    .map(|&(l, h)| pb::PaddingConfigDimension {
                        edge_padding_low: l as i64,
                        edge_padding_high: h as i64,
                        interior_padding: 0,
                    })
                    .collect(),
            })
        }
        HOp::Iota(a) => p.dimensions = vec![*a as i64],
        HOp::Gather { offset_dims, collapsed_slice_dims, start_index_map, index_vector_dim, slice_sizes } => {
            p.gather_dimension_numbers = Some(pb::GatherDimensionNumbers {
                offset_dims: to_i64(offset_dims),
                collapsed_slice_dims: to_i64(collapsed_slice_dims),
                start_index_map: to_i64(start_index_map),
                index_vector_dim: *index_vector_dim as i64,
            });
            p.gather_slice_sizes = to_i64(slice_sizes);
        }
        HOp::DynamicSlice(s) => p.dynamic_slice_sizes = to_i64(s),
        HOp::GetTupleElement(i) => p.tuple_index = *i as i64,
        HOp::CustomCall { target, backend_config } => {
            p.custom_call_target = target.clone();
            p.backend_config = backend_config.as_bytes().to_vec();
        }
    }
    let _ = c;
    p
}

fn program_shape_proto(c: &Computation) -> pb::ProgramShapeProto {
    let (params, result) = program_shape(c);
    pb::ProgramShapeProto {
        parameters: params.iter().map(shape_proto).collect(),
        result: Some(shape_proto(&result)),
        parameter_names: c.params().iter().map(|&p| c.instrs[p].name.clone()).collect(),
    }
}

/// The module as an `HloModuleProto` message.
pub fn to_proto(m: &Module) -> pb::HloModuleProto {
    // Ids: computations first, then every instruction, all distinct.
    // Start at 1: a zero id would be left out of the encoding (proto3).
    let comp_ids: Vec<i64> = (1..=m.computations.len() as i64).collect();
    let mut next = m.computations.len() as i64 + 1;
    let mut computations = Vec::with_capacity(m.computations.len());
    for (ci, c) in m.computations.iter().enumerate() {
        let first = next;
        next += c.instrs.len() as i64;
        computations.push(pb::HloComputationProto {
            name: c.name.clone(),
            instructions: c
                .instrs
                .iter()
                .enumerate()
                .map(|(i, ins)| instr_proto(c, ins, first + i as i64, first, &comp_ids))
                .collect(),
            program_shape: Some(program_shape_proto(c)),
            id: comp_ids[ci],
            root_id: first + c.root as i64,
        });
    }
    let entry = &m.computations[m.entry];
    pb::HloModuleProto {
        name: m.name.clone(),
        entry_computation_name: entry.name.clone(),
        computations,
        host_program_shape: Some(program_shape_proto(entry)),
        id: 0,
        entry_computation_id: comp_ids[m.entry],
        input_output_alias: (!m.aliases.is_empty()).then(|| pb::HloInputOutputAliasProto {
            entries: m
                .aliases
                .iter()
                .map(|a| pb::AliasEntryProto {
                    output_shape_index: vec![a.output as i64],
                    parameter_number: a.param as i64,
                    parameter_shape_index: vec![],
                    kind: pb::MUST_ALIAS,
                })
                .collect(),
        }),
    }
}

/// The serialized `HloModuleProto` bytes.
pub fn to_proto_bytes(m: &Module) -> Vec<u8> {
    prost::Message::encode_to_vec(&to_proto(m))
}
