//! Prompt lookup: proposals without a draft model.
//!
//! The most recent earlier occurrence of the longest suffix of the text so
//! far (n-grams from `max_ngram` down to 1 tokens) predicts that the tokens
//! that followed it come again; they become the round's proposals. This is
//! cheap and pays on input-grounded and repetitive text (code edits,
//! extraction, JSON).

/// Up to `k` proposed tokens, or `None` when no suffix n-gram recurs.
pub fn propose(history: &[i64], k: usize, max_ngram: usize) -> Option<Vec<i64>> {
    for n in (1..=max_ngram.min(history.len().saturating_sub(1))).rev() {
        let suffix = &history[history.len() - n..];
        // Search backwards, excluding the suffix itself.
        for start in (0..history.len() - n).rev() {
            if &history[start..start + n] == suffix {
                let follow = &history[start + n..];
                if !follow.is_empty() {
                    return Some(follow.iter().take(k).copied().collect());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::propose;

    #[test]
    fn longest_recent_match_wins() {
        // ... 1 2 3 7 8 ... 1 2 3 -> 7 8 (the 3-gram), not what follows "3" last.
        let h = [1, 2, 3, 7, 8, 9, 3, 5, 1, 2, 3];
        assert_eq!(propose(&h, 2, 3), Some(vec![7, 8]));
        assert_eq!(propose(&h, 5, 3), Some(vec![7, 8, 9, 3, 5]));
        assert_eq!(propose(&[4, 5, 6], 3, 3), None);
        assert_eq!(propose(&[4, 4], 3, 3), Some(vec![4]));
    }
}
