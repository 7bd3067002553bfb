//! The graph's artifact encoding: a magic tag, a format version, then the
//! graph in bincode (through serde). Decoding always runs the verifier, so a
//! corrupt or hand-edited file is refused rather than trusted.

use crate::error::IrError;
use crate::graph::Graph;

const MAGIC: &[u8; 8] = b"SPECCIR\0";
/// Bump when the encoded form of the IR changes.
pub const FORMAT_VERSION: u32 = 1;

/// The largest encoded graph read back (real ones are a few MB: weights
/// and large constants are never inside a graph).
const MAX_IR_BYTES: usize = 1 << 28;

fn decode_limited<const LIMIT: usize>(body: &[u8]) -> Result<(Graph, usize), IrError> {
    bincode::serde::decode_from_slice(body, bincode::config::standard().with_limit::<LIMIT>())
        .map_err(|e| IrError::Decode(e.to_string()))
}

impl Graph {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let body =
            bincode::serde::encode_to_vec(self, bincode::config::standard()).expect("an IR graph always encodes");
        out.extend_from_slice(&body);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Graph, IrError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| IrError::Decode("not a specc IR file (bad magic)".into()))?;
        let (version, body) = rest.split_at_checked(4).ok_or_else(|| IrError::Decode("truncated header".into()))?;
        let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(IrError::Decode(format!(
                "IR format version {version}, this specc reads version {FORMAT_VERSION}"
            )));
        }
        // bincode allocates a string or byte vector of whatever length the
        // file claims; a limit no larger than a small multiple of the body
        // makes a corrupt length an error instead of an allocation of
        // exabytes. The limit is a type parameter, hence the tiers.
        let (graph, used): (Graph, usize) = match body.len() {
            n if n <= 1 << 20 => decode_limited::<{ 1 << 22 }>(body),
            n if n <= 1 << 24 => decode_limited::<{ 1 << 26 }>(body),
            n if n <= MAX_IR_BYTES => decode_limited::<{ MAX_IR_BYTES * 2 }>(body),
            n => {
                return Err(IrError::Decode(format!(
                    "{n} bytes: larger than any IR graph specc writes (at most {MAX_IR_BYTES})"
                )));
            }
        }?;
        if used != body.len() {
            return Err(IrError::Decode(format!("{} trailing bytes", body.len() - used)));
        }
        crate::verify::verify(&graph)?;
        Ok(graph)
    }
}
