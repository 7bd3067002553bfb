//! Mutations of an ONNX case (`model.onnx`, with a `data.bin` beside it
//! for external data): bit flips aimed at the regions that hold sizes and
//! indices (`wire`), byte-level damage, and structured edits of the decoded
//! protobuf (dims, dtypes, attributes, edges, op types, external data).

use crate::case::Case;
use crate::rng::{INTERESTING_I64, Rng};
use crate::wire::{self, Kind};
use onnx_ir::Message;

pub const MODEL: &str = "model.onnx";
/// A data file every ONNX case carries, for external-data mutations.
pub const DATA: &str = "data.bin";

/// Op types the importer supports (a mutation may swap one for another).
fn op_types() -> &'static [&'static str] {
    specc_onnx::SUPPORTED
}

/// Applies one random mutation; returns its name (for the statistics).
pub fn mutate(case: &mut Case, rng: &mut Rng) -> &'static str {
    let Some(bytes) = case.file(MODEL).cloned() else { return "none" };
    let (name, out) = match rng.below(10) {
        0..=3 => ("region-flip", region_flip(&bytes, rng)),
        4 => ("byte", byte_damage(&bytes, rng)),
        _ => match structured(&bytes, rng) {
            Some((name, out)) => (name, out),
            None => ("region-flip", region_flip(&bytes, rng)),
        },
    };
    case.set(MODEL, out);
    name
}

/// Flips a bit (or sets a byte) inside an initializer header, a shape or a
/// node.
pub fn region_flip(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let regions = wire::regions(bytes);
    let mut out = bytes.to_vec();
    let kind = match rng.below(3) {
        0 => Kind::InitializerHeader,
        1 => Kind::Shape,
        _ => Kind::Node,
    };
    let of_kind: Vec<&wire::Region> = regions.iter().filter(|r| r.kind == kind && !r.bytes.is_empty()).collect();
    let Some(r) = rng.pick(&of_kind).copied().or_else(|| regions.first()) else {
        return byte_damage(bytes, rng);
    };
    if r.bytes.is_empty() || out.is_empty() {
        return out;
    }
    let at = r.bytes.start + rng.below(r.bytes.len());
    if rng.one_in(4) {
        out[at] = *rng.pick(&[0x00, 0x01, 0x7f, 0x80, 0xff]).unwrap();
    } else {
        out[at] ^= 1 << rng.below(8);
    }
    out
}

fn byte_damage(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return out;
    }
    match rng.below(4) {
        0 => {
            let at = rng.below(out.len());
            out[at] ^= 1 << rng.below(8);
        }
        1 => out.truncate(rng.below(out.len())),
        2 => {
            // Delete a chunk.
            let a = rng.below(out.len());
            let n = rng.below(64.min(out.len() - a) + 1);
            out.drain(a..a + n);
        }
        _ => {
            // Duplicate a chunk.
            let a = rng.below(out.len());
            let n = rng.below(64.min(out.len() - a) + 1);
            let chunk = out[a..a + n].to_vec();
            let at = rng.below(out.len());
            out.splice(at..at, chunk);
        }
    }
    out
}

fn interesting(rng: &mut Rng) -> i64 {
    if rng.one_in(3) { rng.below(9) as i64 - 2 } else { *rng.pick(INTERESTING_I64).unwrap() }
}

/// A decoded, edited and re-encoded model; None if it does not decode.
fn structured(bytes: &[u8], rng: &mut Rng) -> Option<(&'static str, Vec<u8>)> {
    let mut m = onnx_ir::ModelProto::parse_from_bytes(bytes).ok()?;
    let g = m.graph.as_mut()?;
    let name = match rng.below(11) {
        0 => {
            // A dim of an input, output or value_info.
            let n = g.input.len() + g.output.len() + g.value_info.len();
            let i = rng.below(n.max(1));
            let vi = if i < g.input.len() {
                g.input.get_mut(i)
            } else if i < g.input.len() + g.output.len() {
                g.output.get_mut(i - g.input.len())
            } else {
                g.value_info.get_mut(i - g.input.len() - g.output.len())
            }?;
            let shape = vi.type_.mut_or_insert_default().mut_tensor_type().shape.mut_or_insert_default();
            match rng.below(4) {
                0 => shape.dim.clear(),
                1 if !shape.dim.is_empty() => {
                    let d = rng.below(shape.dim.len());
                    shape.dim[d]
                        .set_dim_param(["n", "batch_size", "sequence_length", "x + 1", ""][rng.below(5)].into());
                }
                _ if !shape.dim.is_empty() => {
                    let d = rng.below(shape.dim.len());
                    shape.dim[d].set_dim_value(interesting(rng));
                }
                _ => return None,
            }
            "dim"
        }
        1 => {
            let t = rng.pick(&(0..g.initializer.len()).collect::<Vec<_>>()).copied()?;
            let t = &mut g.initializer[t];
            match rng.below(3) {
                0 if !t.dims.is_empty() => {
                    let d = rng.below(t.dims.len());
                    t.dims[d] = interesting(rng);
                }
                1 => t.dims.push(interesting(rng)),
                _ => {
                    t.dims.pop();
                }
            }
            "initializer-dims"
        }
        2 => {
            let t = rng.below(g.initializer.len().max(1));
            g.initializer.get_mut(t)?.data_type = rng.below(20) as i32;
            "initializer-dtype"
        }
        3 => {
            let t = rng.below(g.initializer.len().max(1));
            let t = g.initializer.get_mut(t)?;
            let mut raw = t.raw_data.to_vec();
            let n = raw.len();
            match rng.below(3) {
                0 => raw.truncate(rng.below(n.max(1))),
                1 => raw.extend(std::iter::repeat_n(0u8, 1 + rng.below(64))),
                _ if n > 0 => {
                    let at = rng.below(n);
                    raw[at] ^= 1 << rng.below(8);
                }
                _ => return None,
            }
            t.raw_data = raw.into();
            "initializer-data"
        }
        4 => {
            // Move an initializer's data to external data, somewhere.
            let t = rng.below(g.initializer.len().max(1));
            let t = g.initializer.get_mut(t)?;
            t.raw_data = Default::default();
            t.external_data.clear();
            let location = *rng
                .pick(&[
                    DATA,
                    DATA,
                    "../../../../../../etc/passwd",
                    "/etc/passwd",
                    "/dev/zero",
                    "",
                    "missing.bin",
                    ".",
                    "data.bin/..",
                ])
                .unwrap();
            for (k, v) in [
                ("location", location.to_string()),
                ("offset", interesting(rng).to_string()),
                ("length", if rng.one_in(2) { interesting(rng).to_string() } else { "x".into() }),
            ] {
                if rng.one_in(5) && k != "location" {
                    continue;
                }
                t.external_data.push(Default::default());
                let e = t.external_data.last_mut().unwrap();
                e.key = k.into();
                e.value = v;
            }
            "external-data"
        }
        5 => {
            // An attribute's value.
            let with: Vec<usize> = (0..g.node.len()).filter(|&i| !g.node[i].attribute.is_empty()).collect();
            let n = *rng.pick(&with)?;
            let attrs = &mut g.node[n].attribute;
            let a = rng.below(attrs.len());
            let a = &mut attrs[a];
            match rng.below(6) {
                0 => a.i = interesting(rng),
                1 if !a.ints.is_empty() => {
                    let k = rng.below(a.ints.len());
                    a.ints[k] = interesting(rng);
                }
                2 => a.ints.push(interesting(rng)),
                3 => a.f = *rng.pick(&[f32::NAN, f32::INFINITY, -1.0, 0.0, 1e30, f32::MIN_POSITIVE]).unwrap(),
                4 => {
                    if let Some(t) = a.t.as_mut() {
                        if t.dims.is_empty() {
                            t.dims.push(interesting(rng));
                        } else {
                            let k = rng.below(t.dims.len());
                            t.dims[k] = interesting(rng);
                        }
                    } else {
                        a.ints.clear();
                    }
                }
                _ => {
                    let k = rng.below(g.node[n].attribute.len());
                    g.node[n].attribute.remove(k);
                }
            }
            "attribute"
        }
        6 => {
            // An edge: an input swapped, redirected, dropped or added.
            let n = rng.below(g.node.len().max(1));
            let values: Vec<String> = g
                .node
                .iter()
                .flat_map(|n| n.output.iter().cloned())
                .chain(g.input.iter().map(|i| i.name.clone()))
                .chain(g.initializer.iter().map(|t| t.name.clone()))
                .collect();
            let node = g.node.get_mut(n)?;
            match rng.below(4) {
                0 if node.input.len() >= 2 => {
                    let (a, b) = (rng.below(node.input.len()), rng.below(node.input.len()));
                    node.input.swap(a, b);
                }
                1 if !node.input.is_empty() => {
                    let k = rng.below(node.input.len());
                    node.input[k] = rng.pick(&values)?.clone();
                }
                2 if !node.input.is_empty() => {
                    node.input.remove(rng.below(node.input.len()));
                }
                _ => node.input.push(if rng.one_in(2) { String::new() } else { rng.pick(&values)?.clone() }),
            }
            "edge"
        }
        7 => {
            let n = rng.below(g.node.len().max(1));
            let op = *rng.pick(op_types())?;
            g.node.get_mut(n)?.op_type = op.into();
            "op-type"
        }
        8 => {
            let n = rng.below(g.node.len().max(1));
            if g.node.is_empty() {
                return None;
            }
            if rng.one_in(2) {
                g.node.remove(n);
            } else {
                let copy = g.node[n].clone();
                g.node.insert(rng.below(g.node.len()), copy);
            }
            "node"
        }
        9 => {
            if m.opset_import.is_empty() {
                return None;
            }
            let k = rng.below(m.opset_import.len());
            m.opset_import[k].version = rng.below(26) as i64;
            "opset"
        }
        _ => {
            // Outputs: one dropped, or a node's output made a graph output.
            if rng.one_in(2) && !g.output.is_empty() {
                g.output.remove(rng.below(g.output.len()));
            } else {
                let n = rng.below(g.node.len().max(1));
                let out = g.node.get(n)?.output.first()?.clone();
                let mut vi = g.output.first()?.clone();
                vi.name = out;
                g.output.push(vi);
            }
            "outputs"
        }
    };
    Some((name, m.write_to_bytes().ok()?))
}
