//! Dim names that are arithmetic over other dims.
//!
//! Exporters name derived sizes by their formula: optimum's attention mask
//! is `[batch_size, past_sequence_length + sequence_length]`. Once the dims
//! in the formula are bound, the derived dim is bound too, so users only
//! ever bind the base dims.

use std::collections::BTreeMap;

/// Evaluates `+`, `-`, `*`, parentheses, integers and names; `None` when the
/// text is not such a formula or names an unbound dim.
pub fn eval(text: &str, env: &BTreeMap<String, usize>) -> Option<i64> {
    let tokens = tokenize(text)?;
    if tokens.len() < 2 {
        return None; // a bare name is a base dim, not a formula
    }
    let mut p = Parser { tokens, at: 0, env };
    let v = p.sum()?;
    (p.at == p.tokens.len()).then_some(v)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(i64),
    Name(String),
    Op(char),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect::<String>().parse().ok()?));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Name(chars[start..i].iter().collect()));
        } else if "+-*()".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

struct Parser<'a> {
    tokens: Vec<Tok>,
    at: usize,
    env: &'a BTreeMap<String, usize>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at)
    }

    fn sum(&mut self) -> Option<i64> {
        let mut v = self.product()?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            let r = self.product()?;
            v = if op == '+' { v.checked_add(r)? } else { v.checked_sub(r)? };
        }
        Some(v)
    }

    fn product(&mut self) -> Option<i64> {
        let mut v = self.atom()?;
        while let Some(Tok::Op('*')) = self.peek() {
            self.at += 1;
            v = v.checked_mul(self.atom()?)?;
        }
        Some(v)
    }

    fn atom(&mut self) -> Option<i64> {
        let t = self.peek()?.clone();
        self.at += 1;
        match t {
            Tok::Num(n) => Some(n),
            Tok::Name(n) => self.env.get(&n).map(|&v| v as i64),
            Tok::Op('(') => {
                let v = self.sum()?;
                (self.peek() == Some(&Tok::Op(')'))).then(|| self.at += 1)?;
                Some(v)
            }
            Tok::Op('-') => self.atom().map(|v| -v),
            Tok::Op(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_dims_evaluate() {
        let env: BTreeMap<String, usize> =
            [("past_sequence_length".to_string(), 64), ("sequence_length".to_string(), 5)].into();
        assert_eq!(eval("past_sequence_length + sequence_length", &env), Some(69));
        assert_eq!(eval("past_sequence_length + 1", &env), Some(65));
        assert_eq!(eval("2 * (sequence_length - 1)", &env), Some(8));
        assert_eq!(eval("sequence_length", &env), None);
        assert_eq!(eval("unknown + 1", &env), None);
        assert_eq!(eval("a / b", &env), None);
    }
}
