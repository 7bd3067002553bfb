//! Text in, text out: a model's Hugging Face `tokenizer.json` (read with
//! the `tokenizers` crate, so ids match what the model was trained on).
//!
//! Architecture Invariant: the graphs and the executor only see token ids;
//! text exists at the edges (the CLI), so a model without a tokenizer
//! works the same with `--prompt-ids`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file name, in a model's export directory or the artifact.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot read the tokenizer {origin}: {detail}")]
    Load { origin: String, detail: String },
    #[error("cannot encode the prompt with the tokenizer: {0}")]
    Encode(String),
    #[error(
        "the tokenizer {origin} has {tokenizer} tokens but the model's logits have {model} entries: they do not belong together"
    )]
    VocabularyTooLarge { origin: String, tokenizer: usize, model: usize },
    #[error(
        "the draft's tokenizer {draft} differs from the target's {target} ({detail}): the two models must share a vocabulary"
    )]
    DraftDiffers { target: String, draft: String, detail: String },
}

pub struct Text {
    tok: tokenizers::Tokenizer,
    origin: String,
}

impl Text {
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Text, TextError> {
        // The tokenizers crate panics on some malformed files (its decoder
        // section is read with `expect`): contained as a load error.
        let load = |detail: String| TextError::Load { origin: origin.into(), detail };
        let tok = specc_ir::contain::contain(|| tokenizers::Tokenizer::from_bytes(bytes))
            .map_err(|panic| load(format!("the tokenizers library could not read it ({panic})")))?
            .map_err(|e| load(specc_ir::contain::brief(e)))?;
        Ok(Text { tok, origin: origin.into() })
    }

    pub fn from_file(path: &Path) -> Result<Text, TextError> {
        let origin = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|e| TextError::Load { origin: origin.clone(), detail: e.to_string() })?;
        Text::from_bytes(&bytes, &origin)
    }

    /// Tokens including added (special) ones.
    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }

    fn vocab(&self) -> HashMap<String, u32> {
        self.tok.get_vocab(true)
    }

    /// Refuses a tokenizer with ids the model has no logits for. (A model
    /// may have more logits than tokens: vocabularies are often padded.)
    pub fn check_model_vocab(&self, model_vocab: usize) -> Result<(), TextError> {
        let n = self.vocab_size();
        if n > model_vocab {
            return Err(TextError::VocabularyTooLarge {
                origin: self.origin.clone(),
                tokenizer: n,
                model: model_vocab,
            });
        }
        Ok(())
    }

    /// Refuses a draft whose tokenizer maps any token differently.
    pub fn check_same_as(&self, draft: &Text) -> Result<(), TextError> {
        let (t, d) = (self.vocab(), draft.vocab());
        let differs = |detail: String| TextError::DraftDiffers {
            target: self.origin.clone(),
            draft: draft.origin.clone(),
            detail,
        };
        if t.len() != d.len() {
            return Err(differs(format!("{} tokens vs {}", t.len(), d.len())));
        }
        let mut diff: Vec<(&String, &u32)> = t.iter().filter(|(tok, id)| d.get(*tok) != Some(id)).collect();
        diff.sort_by_key(|(_, id)| **id);
        if let Some((tok, id)) = diff.first() {
            return Err(differs(format!("token {tok:?} is {id} in the target's, {:?} in the draft's", d.get(*tok))));
        }
        Ok(())
    }

    /// The prompt's ids, without added special tokens (the text is taken
    /// literally, as Hugging Face's generate() takes input_ids).
    pub fn encode(&self, s: &str) -> Result<Vec<i64>, TextError> {
        let e = specc_ir::contain::contain(|| self.tok.encode(s, false))
            .map_err(TextError::Encode)?
            .map_err(|e| TextError::Encode(specc_ir::contain::brief(e)))?;
        Ok(e.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        specc_ir::contain::contain(|| self.tok.decode(&ids, true)).ok().and_then(Result::ok).unwrap_or_default()
    }

    /// An incremental decoder: each call gives the text that the new ids
    /// complete (a multi-byte character split over tokens waits for its
    /// last byte). Ids the tokenizer lacks show as `<id>`.
    pub fn stream(&self) -> impl FnMut(&[i64]) -> String + '_ {
        let mut ds = self.tok.decode_stream(true);
        move |ids: &[i64]| {
            let mut out = String::new();
            for &id in ids {
                match specc_ir::contain::contain(|| ds.step(id as u32)) {
                    Ok(Ok(Some(s))) => out.push_str(&s),
                    Ok(Ok(None)) => {}
                    _ => out.push_str(&format!("<{id}>")),
                }
            }
            out
        }
    }
}

/// `explicit`, else `tokenizer.json` beside the model or one directory up
/// (optimum writes the export into a `with_past/` subdirectory).
pub fn find_tokenizer(explicit: Option<&Path>, model: &Path) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let dir = model.parent()?;
    let mut candidates = vec![dir.join(TOKENIZER_FILE)];
    candidates.extend(dir.parent().map(|up| up.join(TOKENIZER_FILE)));
    candidates.into_iter().find(|p| p.is_file())
}
