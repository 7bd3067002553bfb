//! Mutations of an artifact case: its manifest edited as JSON (numbers to
//! the edges of their types, strings to paths that leave the artifact or
//! to unknown names, arrays emptied or duplicated, keys dropped), its
//! binary files damaged (with the manifest's checksums updated, as an
//! attacker or a buggy tool would, so that the decoders behind them are
//! reached), its JSON files (weights header, tokenizer) edited, and its
//! files replaced by symlinks, FIFOs or nothing.

use crate::case::{Case, Entry};
use crate::rng::{INTERESTING_I64, Rng};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const MANIFEST: &str = "manifest.json";

pub fn mutate(case: &mut Case, rng: &mut Rng) -> &'static str {
    // Some mutations do not apply to every artifact (no tokenizer, say).
    for _ in 0..8 {
        let name = mutate_once(case, rng);
        if name != "none" {
            return name;
        }
    }
    "none"
}

fn mutate_once(case: &mut Case, rng: &mut Rng) -> &'static str {
    match rng.below(20) {
        0..=8 => {
            let Some(v) = json_of(case, MANIFEST) else { return "none" };
            let mut v = v;
            mutate_json(&mut v, rng);
            case.set(MANIFEST, serde_json::to_vec_pretty(&v).unwrap());
            "manifest-json"
        }
        9..=12 => {
            let Some(rel) = pick_file(case, rng, &[".ir", ".safetensors"]) else { return "none" };
            let mut b = case.file(&rel).unwrap().clone();
            damage(&mut b, rng);
            case.set(&rel, b);
            if !rng.one_in(5) {
                fix_checksum(case, &rel);
            }
            "binary-file"
        }
        13..=14 => {
            let Some(rel) = pick_file(case, rng, &[".safetensors"]) else { return "none" };
            let b = case.file(&rel).unwrap().clone();
            let Some(out) = mutate_safetensors_header(&b, rng) else { return "none" };
            case.set(&rel, out);
            fix_checksum(case, &rel);
            "weights-header"
        }
        15..=16 => {
            let Some(rel) = pick_file(case, rng, &["tokenizer.json"]) else { return "none" };
            let Some(mut v) = json_of(case, &rel) else { return "none" };
            mutate_json(&mut v, rng);
            case.set(&rel, serde_json::to_vec(&v).unwrap());
            fix_checksum(case, &rel);
            "tokenizer-json"
        }
        17..=18 => {
            let files: Vec<String> = case.entries.keys().cloned().collect();
            let Some(rel) = rng.pick(&files).cloned() else { return "none" };
            let e = match rng.below(4) {
                0 => Some(Entry::Symlink("/etc/passwd".into())),
                1 => Some(Entry::Symlink("/dev/zero".into())),
                2 => Some(Entry::Fifo),
                _ => None,
            };
            match e {
                Some(e) => case.entries.insert(rel, e),
                None => case.entries.remove(&rel),
            };
            "filesystem"
        }
        _ => {
            let Some(mut b) = case.file(MANIFEST).cloned() else { return "none" };
            damage(&mut b, rng);
            case.set(MANIFEST, b);
            "manifest-bytes"
        }
    }
}

/// A `tokenizer.json` case: edited as JSON, or damaged as bytes.
pub fn mutate_tokenizer(case: &mut Case, rng: &mut Rng) -> &'static str {
    let rel = crate::targets::TOKENIZER;
    match json_of(case, rel) {
        Some(mut v) if !rng.one_in(5) => {
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut v, rng);
            }
            case.set(rel, serde_json::to_vec(&v).unwrap());
            "tokenizer-json"
        }
        _ => {
            let Some(mut b) = case.file(rel).cloned() else { return "none" };
            damage(&mut b, rng);
            case.set(rel, b);
            "tokenizer-bytes"
        }
    }
}

fn json_of(case: &Case, rel: &str) -> Option<Value> {
    serde_json::from_slice(case.file(rel)?).ok()
}

fn pick_file(case: &Case, rng: &mut Rng, suffixes: &[&str]) -> Option<String> {
    let files: Vec<String> = case
        .entries
        .iter()
        .filter(|(k, v)| matches!(v, Entry::File(_)) && suffixes.iter().any(|s| k.ends_with(s)))
        .map(|(k, _)| k.clone())
        .collect();
    rng.pick(&files).cloned()
}

fn damage(b: &mut Vec<u8>, rng: &mut Rng) {
    if b.is_empty() {
        return;
    }
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 => b.truncate(rng.below(b.len())),
            1 => {
                let at = rng.below(b.len());
                b[at] = *rng.pick(&[0x00, 0x01, 0x7f, 0x80, 0xff]).unwrap();
            }
            2 => {
                // A little-endian u64 of an interesting value (bincode
                // lengths and safetensors' header size are such words).
                let at = rng.below(b.len());
                let v = (*rng.pick(INTERESTING_I64).unwrap() as u64).to_le_bytes();
                let n = v.len().min(b.len() - at);
                b[at..at + n].copy_from_slice(&v[..n]);
            }
            _ => {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
        }
        if b.is_empty() {
            return;
        }
    }
}

/// Sets the manifest's size and SHA-256 of `rel` to what it holds now.
fn fix_checksum(case: &mut Case, rel: &str) {
    let Some(bytes) = case.file(rel).cloned() else { return };
    let Some(mut m) = json_of(case, MANIFEST) else { return };
    let sum: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    fn walk(v: &mut Value, rel: &str, len: u64, sum: &str) {
        match v {
            Value::Object(o) => {
                if o.get("file").and_then(Value::as_str) == Some(rel) && o.contains_key("sha256") {
                    o.insert("bytes".into(), len.into());
                    o.insert("sha256".into(), sum.into());
                }
                o.values_mut().for_each(|x| walk(x, rel, len, sum));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, rel, len, sum)),
            _ => {}
        }
    }
    walk(&mut m, rel, bytes.len() as u64, &sum);
    case.set(MANIFEST, serde_json::to_vec_pretty(&m).unwrap());
}

/// A safetensors file with its JSON header edited (the data kept).
fn mutate_safetensors_header(b: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let header = b.get(8..8usize.checked_add(n)?)?;
    let mut v: Value = serde_json::from_slice(header).ok()?;
    mutate_json(&mut v, rng);
    let h = serde_json::to_vec(&v).ok()?;
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(&b[8 + n..]);
    Some(out)
}

/// Strings that break path, name and type handling.
const STRINGS: &[&str] = &[
    "",
    "../../../../../../etc/passwd",
    "/etc/passwd",
    "/dev/zero",
    "graphs/../manifest.json",
    "graphs/../../outside",
    "./manifest.json",
    "f32",
    "s32",
    "s64",
    "bf16",
    "pred",
    "f128",
    "input",
    "weight",
    "output",
    "target",
    "draft",
    "model",
    "nope",
    "target::nope",
    "prefill",
    "decode",
    "fused",
];

/// Applies one edit at a random place in the JSON tree.
pub fn mutate_json(v: &mut Value, rng: &mut Rng) {
    let mut paths = Vec::new();
    collect(v, &mut Vec::new(), &mut paths);
    let Some(path) = rng.pick(&paths).cloned() else { return };
    let Some(target) = at_path(v, &path) else { return };
    match target {
        Value::Number(_) | Value::Null | Value::Bool(_) if rng.below(5) > 0 => {
            *target = match rng.below(6) {
                0 => Value::from(u64::MAX),
                1 => Value::from(1.5),
                2 => Value::from(-0.0),
                _ => Value::from(*rng.pick(INTERESTING_I64).unwrap()),
            };
        }
        Value::String(s) if rng.below(5) > 0 => {
            *s = match rng.below(4) {
                // Longer, but not without bound: compounding repeats
                // would otherwise grow a case to gigabytes.
                0 if s.len() < 256 => s.repeat(1 + rng.below(64)),
                1 => s.chars().take(rng.below(s.len() + 1)).collect(),
                _ => rng.pick(STRINGS).unwrap().to_string(),
            };
        }
        Value::Array(a) if rng.below(5) > 0 => match rng.below(5) {
            0 => a.clear(),
            1 if !a.is_empty() => {
                a.remove(rng.below(a.len()));
            }
            2 if !a.is_empty() => {
                let x = a[rng.below(a.len())].clone();
                a.insert(rng.below(a.len() + 1), x);
            }
            3 if a.len() >= 2 => {
                let (i, j) = (rng.below(a.len()), rng.below(a.len()));
                a.swap(i, j);
            }
            _ => a.push(Value::from(*rng.pick(INTERESTING_I64).unwrap())),
        },
        Value::Object(o) if rng.below(5) > 0 => {
            let keys: Vec<String> = o.keys().cloned().collect();
            if let Some(k) = rng.pick(&keys) {
                if rng.one_in(2) {
                    o.remove(k);
                } else {
                    o.insert(k.clone(), Value::Null);
                }
            }
        }
        other => {
            // Another type altogether.
            *other = match rng.below(4) {
                0 => Value::Null,
                1 => Value::from("x"),
                2 => Value::Array(vec![]),
                _ => Value::from(-1),
            };
        }
    }
}

fn collect(v: &Value, here: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(here.clone());
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                here.push(PathStep::Key(k.clone()));
                collect(x, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                here.push(PathStep::Index(i));
                collect(x, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at_path<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => cur.get_mut(k.as_str())?,
            PathStep::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}
