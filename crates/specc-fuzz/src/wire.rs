//! Regions of an ONNX file, from its protobuf wire format: where each
//! initializer's header (its name, dims, type and external-data entries,
//! but not its raw bytes), each graph input/output/value_info (the shape
//! regions) and each node are. Bit flips aimed at these regions reach the
//! size and index arithmetic; flips in raw weight bytes only change
//! numbers.
//!
//! Field numbers (onnx.proto): ModelProto.graph = 7; GraphProto.node = 1,
//! initializer = 5, input = 11, output = 12, value_info = 13;
//! TensorProto.raw_data = 9.

use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TensorProto without its raw_data payload.
    InitializerHeader,
    /// A ValueInfoProto (name and type, with its shape).
    Shape,
    Node,
}

#[derive(Clone, Debug)]
pub struct Region {
    pub kind: Kind,
    pub bytes: Range<usize>,
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The fields of the message in `b[range]`: (field number, wire type,
/// value range for length-delimited fields, whole field range).
fn fields(b: &[u8], range: Range<usize>) -> Vec<(u64, u64, Range<usize>, Range<usize>)> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let start = at;
        let Some(key) = varint(b, &mut at) else { break };
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => {
                let s = at;
                if varint(b, &mut at).is_none() {
                    break;
                }
                s..at
            }
            1 => {
                at += 8;
                at - 8..at
            }
            5 => {
                at += 4;
                at - 4..at
            }
            2 => {
                let Some(len) = varint(b, &mut at) else { break };
                let Some(end) = at.checked_add(len as usize).filter(|&e| e <= range.end) else { break };
                let s = at;
                at = end;
                s..end
            }
            _ => break,
        };
        if at > range.end {
            break;
        }
        out.push((field, wire, value, start..at));
    }
    out
}

/// The regions of an ONNX model file (empty if it does not parse).
pub fn regions(model: &[u8]) -> Vec<Region> {
    let mut out = Vec::new();
    for (f, w, graph, _) in fields(model, 0..model.len()) {
        if f != 7 || w != 2 {
            continue;
        }
        for (f, w, value, whole) in fields(model, graph.clone()) {
            if w != 2 {
                continue;
            }
            match f {
                1 => out.push(Region { kind: Kind::Node, bytes: whole }),
                11..=13 => out.push(Region { kind: Kind::Shape, bytes: whole }),
                5 => {
                    // The tensor's fields, with the raw_data payload left out
                    // (its tag and length stay in: they are sizes too).
                    for (tf, _, tv, twhole) in fields(model, value) {
                        let bytes = if tf == 9 { twhole.start..tv.start } else { twhole };
                        out.push(Region { kind: Kind::InitializerHeader, bytes });
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_a_fixture_cover_its_initializers_shapes_and_nodes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../graphs/fixtures/qwen2/with_past/model.onnx");
        let bytes = std::fs::read(path).unwrap();
        let r = regions(&bytes);
        let count = |k: Kind| r.iter().filter(|x| x.kind == k).count();
        let m = specc_onnx::read_model(std::path::Path::new(path)).unwrap();
        let g = m.graph.as_ref().unwrap();
        assert_eq!(count(Kind::Node), g.node.len());
        assert_eq!(count(Kind::Shape), g.input.len() + g.output.len() + g.value_info.len());
        assert!(count(Kind::InitializerHeader) >= 3 * g.initializer.len(), "name, dims and type per tensor");
        // Headers are small: the raw payloads are left out.
        let header_bytes: usize = r.iter().filter(|x| x.kind == Kind::InitializerHeader).map(|x| x.bytes.len()).sum();
        assert!(header_bytes < bytes.len() / 10, "{header_bytes} of {}", bytes.len());
    }
}
