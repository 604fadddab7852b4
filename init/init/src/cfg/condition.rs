//! The condition language of jobs.
//!
//! A job runs when its condition holds. `param:<name>=<value>` jobs carry the
//! condition in their own name; any job may also have a `condition` field:
//!
//! ```text
//! sys.usb.config=hdc && (const.debuggable=1 || persist.hdc.mode=*)
//! ```
//!
//! Grammar (whitespace is allowed around every token):
//!
//! ```text
//! expr    := or
//! or      := and ( '||' and )*
//! and     := primary ( '&&' primary )*
//! primary := '(' expr ')' | NAME '=' VALUE | STAGE
//! NAME    := [A-Za-z0-9_.\-@:]+   (a leading `param:` is dropped)
//! STAGE   := one of BOOT_STAGES
//! VALUE   := any characters except whitespace, '&', '|', '(' and ')'
//! ```
//!
//! `VALUE` may be empty: `name=` followed by the end, `&&`, `||` or `)`
//! means "the parameter exists and its value is the empty string". Note that
//! whitespace after `=` is skipped, so `a= b` compares `a` with `b`.
//!
//! A value is a pattern: `*` matches any sequence of characters (including
//! none), every other character matches itself. `name=*` therefore means "the
//! parameter exists, whatever its value".
//!
//! A boot stage written alone (`boot && param:sys.usb.config=*`, as in
//! OpenHarmony's USB cfg) holds once that stage's job has run; any other
//! bare name is an error. `param:` before a parameter name is
//! OpenHarmony's spelling and means the same as the name alone.
//!
//! Limits: a condition is at most [`MAX_LEN`] bytes and parentheses nest at
//! most [`MAX_DEPTH`] deep, so parsing untrusted text is bounded.

use std::fmt;

use thiserror::Error;

use crate::cfg::Job;

/// Longest accepted condition, in bytes.
pub const MAX_LEN: usize = 4096;

/// Deepest accepted nesting of parentheses.
pub const MAX_DEPTH: usize = 32;

/// Boot stages a condition may name alone (the jobs of init's fixed boot
/// sequence, OpenHarmony's `pre-init` … `boot`).
pub const BOOT_STAGES: &[&str] =
    &["pre-init", "init", "post-init", "early-fs", "fs", "post-fs", "late-fs", "post-fs-data", "firmware_mounts_complete", "early-boot", "boot"];

/// A parsed condition.
///
/// `Display` prints it fully parenthesized (`(a=1 && (b=2 || c=*))`), which
/// parses back to the same tree as long as parentheses nest at most
/// [`MAX_DEPTH`] deep and names and patterns use only the characters the
/// grammar allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `name=pattern`: true iff parameter `name` exists and its value matches
    /// `pattern` (see the module docs for `*`).
    Cmp { name: String, pattern: String },
    /// A boot stage (one of [`BOOT_STAGES`]): true once its job has run.
    Stage(String),
    /// Both sides hold.
    And(Box<Expr>, Box<Expr>),
    /// At least one side holds.
    Or(Box<Expr>, Box<Expr>),
}

/// Why a condition does not parse. Columns count characters from 1.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConditionError {
    /// Nothing but whitespace.
    #[error("the condition is empty")]
    Empty,
    /// Longer than [`MAX_LEN`] bytes.
    #[error("the condition is {len} bytes long; at most {MAX_LEN} are allowed")]
    TooLong { len: usize },
    /// A comparison was expected (after `(`, `&&`, `||` or at the start).
    #[error("at column {column}: expected a parameter name or `(`, found {found}")]
    ExpectedName { column: usize, found: String },
    /// A name not followed by `=`.
    #[error("at column {column}: expected `=` after parameter name `{name}`, found {found}")]
    ExpectedEquals { column: usize, name: String, found: String },
    /// `&` or `|` written once.
    #[error("at column {column}: single `{op}`; write `{op}{op}`")]
    SingleOperator { column: usize, op: char },
    /// A `(` without its `)`.
    #[error("at column {column}: expected `)` to close the `(` at column {open}, found {found}")]
    UnclosedParen { column: usize, open: usize, found: String },
    /// Parentheses nested deeper than [`MAX_DEPTH`].
    #[error("at column {column}: parentheses nest deeper than {MAX_DEPTH}")]
    TooDeep { column: usize },
    /// Something after a complete expression (a stray `)`, a missing operator).
    #[error("at column {column}: expected `&&`, `||` or the end, found {found}")]
    Trailing { column: usize, found: String },
}

/// Parses a condition expression. See the module docs for the grammar.
pub fn parse(s: &str) -> Result<Expr, ConditionError> {
    if s.len() > MAX_LEN {
        return Err(ConditionError::TooLong { len: s.len() });
    }
    if s.trim().is_empty() {
        return Err(ConditionError::Empty);
    }
    let mut p = Parser { s, pos: 0, depth: 0 };
    let expr = p.or()?;
    p.skip_ws();
    if p.pos < s.len() {
        if let Some(e) = p.single_operator() {
            return Err(e);
        }
        return Err(ConditionError::Trailing { column: p.column(p.pos), found: p.found(p.pos) });
    }
    Ok(expr)
}

/// The trigger of a job, if it has one.
///
/// * `param:<text>` jobs: the `condition` field if present and non-empty,
///   otherwise `<text>` itself (e.g. `param:sys.boot=1`).
/// * Other jobs: their `condition` field, if present and non-empty.
///
/// `None` when the job has no condition at all.
pub fn job_trigger(job: &Job) -> Option<Result<Expr, ConditionError>> {
    let condition = job.condition.as_deref().filter(|c| !c.trim().is_empty());
    match job.name.strip_prefix("param:") {
        Some(rest) => Some(parse(condition.unwrap_or(rest))),
        None => condition.map(parse),
    }
}

impl Expr {
    /// Evaluates the condition; `get` returns a parameter's value, `None`
    /// when it is not set (a comparison with an unset parameter is false).
    /// Boot stages count as not reached; see [`Expr::eval_with`].
    pub fn eval(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        self.eval_with(get, &|_| false)
    }

    /// Evaluates the condition with `stage_done` telling whether a boot
    /// stage has run.
    pub fn eval_with(&self, get: &dyn Fn(&str) -> Option<String>, stage_done: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::Cmp { name, pattern } => get(name).is_some_and(|v| value_matches(pattern, &v)),
            Expr::Stage(stage) => stage_done(stage),
            Expr::And(a, b) => a.eval_with(get, stage_done) && b.eval_with(get, stage_done),
            Expr::Or(a, b) => a.eval_with(get, stage_done) || b.eval_with(get, stage_done),
        }
    }

    /// The boot stages the condition names, each once.
    pub fn stages(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_stages(&mut out);
        out
    }

    fn collect_stages<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Cmp { .. } => {}
            Expr::Stage(s) => {
                if !out.contains(&s.as_str()) {
                    out.push(s);
                }
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_stages(out);
                b.collect_stages(out);
            }
        }
    }

    /// The parameter names the condition reads, each once, in order of
    /// first appearance.
    pub fn names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Cmp { name, .. } => {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
            Expr::Stage(_) => {}
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_names(out);
                b.collect_names(out);
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Cmp { name, pattern } => write!(f, "{name}={pattern}"),
            Expr::Stage(stage) => write!(f, "{stage}"),
            Expr::And(a, b) => write!(f, "({a} && {b})"),
            Expr::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

use accord_param::value_matches;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@' | ':')
}

fn is_value_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '&' | '|' | '(' | ')')
}

/// Recursive-descent parser over `s`; `pos` is a byte offset on a char
/// boundary.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Consumes the longest run of chars satisfying `ok`.
    fn take_while(&mut self, ok: fn(char) -> bool) -> &str {
        let start = self.pos;
        let rest = self.rest();
        let len = rest.find(|c| !ok(c)).unwrap_or(rest.len());
        self.pos += len;
        &self.s[start..start + len]
    }

    /// 1-based character column of byte offset `pos`.
    fn column(&self, pos: usize) -> usize {
        self.s.get(..pos).map_or(pos, |s| s.chars().count()) + 1
    }

    /// The text at `pos`, quoted and shortened, for error messages.
    fn found(&self, pos: usize) -> String {
        let rest = self.s.get(pos..).unwrap_or("");
        if rest.is_empty() {
            return "the end".to_owned();
        }
        let mut shown: String = rest.chars().take(16).collect();
        if shown.len() < rest.len() {
            shown.push('…');
        }
        format!("`{shown}`")
    }

    /// A lone `&` or `|` at the current position, as an error.
    fn single_operator(&self) -> Option<ConditionError> {
        let rest = self.rest();
        ['&', '|'].into_iter().find(|&op| rest.starts_with(op)).map(|op| ConditionError::SingleOperator { column: self.column(self.pos), op })
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut lhs = self.and()?;
        loop {
            self.skip_ws();
            if !self.eat("||") {
                return Ok(lhs);
            }
            let rhs = self.and()?;
            lhs = Expr::Or(Box::new(lhs), Box::new(rhs));
        }
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut lhs = self.primary()?;
        loop {
            self.skip_ws();
            if !self.eat("&&") {
                return Ok(lhs);
            }
            let rhs = self.primary()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        self.skip_ws();
        let open = self.pos;
        if self.eat("(") {
            if self.depth >= MAX_DEPTH {
                return Err(ConditionError::TooDeep { column: self.column(open) });
            }
            self.depth += 1;
            let inner = self.or()?;
            self.skip_ws();
            if !self.eat(")") {
                if let Some(e) = self.single_operator() {
                    return Err(e);
                }
                return Err(ConditionError::UnclosedParen { column: self.column(self.pos), open: self.column(open), found: self.found(self.pos) });
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let name = self.take_while(is_name_char).to_owned();
        if name.is_empty() {
            return Err(ConditionError::ExpectedName { column: self.column(self.pos), found: self.found(self.pos) });
        }
        self.skip_ws();
        if !self.eat("=") {
            if BOOT_STAGES.contains(&name.as_str()) {
                return Ok(Expr::Stage(name));
            }
            return Err(ConditionError::ExpectedEquals { column: self.column(self.pos), name, found: self.found(self.pos) });
        }
        let name = match name.strip_prefix("param:") {
            Some(rest) if !rest.is_empty() => rest.to_owned(),
            _ => name,
        };
        self.skip_ws();
        let pattern = self.take_while(is_value_char).to_owned();
        Ok(Expr::Cmp { name, pattern })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn cmp(name: &str, pattern: &str) -> Expr {
        Expr::Cmp { name: name.into(), pattern: pattern.into() }
    }
    fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }
    fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }
    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
    fn eval_with(e: &Expr, p: &HashMap<String, String>) -> bool {
        e.eval(&|n| p.get(n).cloned())
    }
    fn err(s: &str) -> String {
        match parse(s) {
            Ok(e) => panic!("{s:?} parsed as {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn single_comparison() {
        assert_eq!(parse("sys.usb.config=hdc"), Ok(cmp("sys.usb.config", "hdc")));
        assert_eq!(parse("  a = b  "), Ok(cmp("a", "b")));
        assert_eq!(parse("A-z_0.9@x:y=v*"), Ok(cmp("A-z_0.9@x:y", "v*")));
        // `=` may appear in a value; only the first one separates.
        assert_eq!(parse("a=b=c"), Ok(cmp("a", "b=c")));
        assert_eq!(parse("a=ünïcødé"), Ok(cmp("a", "ünïcødé")));
    }

    #[test]
    fn empty_value() {
        assert_eq!(parse("a="), Ok(cmp("a", "")));
        assert_eq!(parse("a= "), Ok(cmp("a", "")));
        assert_eq!(parse("a=&&b=1"), Ok(and(cmp("a", ""), cmp("b", "1"))));
        assert_eq!(parse("a= || b=1"), Ok(or(cmp("a", ""), cmp("b", "1"))));
        assert_eq!(parse("(a=)"), Ok(cmp("a", "")));
    }

    #[test]
    fn precedence_and_associativity() {
        // && binds tighter than ||.
        assert_eq!(parse("a=1 || b=2 && c=3"), Ok(or(cmp("a", "1"), and(cmp("b", "2"), cmp("c", "3")))));
        assert_eq!(parse("a=1 && b=2 || c=3"), Ok(or(and(cmp("a", "1"), cmp("b", "2")), cmp("c", "3"))));
        // Left associative.
        assert_eq!(parse("a=1&&b=2&&c=3"), Ok(and(and(cmp("a", "1"), cmp("b", "2")), cmp("c", "3"))));
        assert_eq!(parse("a=1||b=2||c=3"), Ok(or(or(cmp("a", "1"), cmp("b", "2")), cmp("c", "3"))));
        // Parentheses override.
        assert_eq!(parse("(a=1 || b=2) && c=3"), Ok(and(or(cmp("a", "1"), cmp("b", "2")), cmp("c", "3"))));
        assert_eq!(parse("a=1&&(b=2||(c=3))"), Ok(and(cmp("a", "1"), or(cmp("b", "2"), cmp("c", "3")))));
    }

    #[test]
    fn errors_name_position_and_text() {
        assert_eq!(err(""), "the condition is empty");
        assert_eq!(err("  \t"), "the condition is empty");
        assert_eq!(err("=1"), "at column 1: expected a parameter name or `(`, found `=1`");
        assert_eq!(err("a=1 && "), "at column 8: expected a parameter name or `(`, found the end");
        assert_eq!(err("a=1 || && b=2"), "at column 8: expected a parameter name or `(`, found `&& b=2`");
        assert_eq!(err("abc"), "at column 4: expected `=` after parameter name `abc`, found the end");
        assert_eq!(err("abc (x=1)"), "at column 5: expected `=` after parameter name `abc`, found `(x=1)`");
        assert_eq!(err("a=1 & b=2"), "at column 5: single `&`; write `&&`");
        assert_eq!(err("(a=1 | b=2)"), "at column 6: single `|`; write `||`");
        assert_eq!(err("(a=1"), "at column 5: expected `)` to close the `(` at column 1, found the end");
        assert_eq!(err("(a=1 b=2)"), "at column 6: expected `)` to close the `(` at column 1, found `b=2)`");
        assert_eq!(err("a=1)"), "at column 4: expected `&&`, `||` or the end, found `)`");
        assert_eq!(err("a=1 b=2"), "at column 5: expected `&&`, `||` or the end, found `b=2`");
        assert_eq!(err("()"), "at column 2: expected a parameter name or `(`, found `)`");
        assert_eq!(err("a=1 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "at column 5: expected `&&`, `||` or the end, found `xxxxxxxxxxxxxxxx…`");
        // Columns count characters, not bytes.
        assert_eq!(err("é=1"), "at column 1: expected a parameter name or `(`, found `é=1`");
        assert_eq!(err("a=é b"), "at column 5: expected `&&`, `||` or the end, found `b`");
    }

    #[test]
    fn limits() {
        let deep_ok = format!("{}a=1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(parse(&deep_ok), Ok(cmp("a", "1")));
        let too_deep = format!("{}a=1{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(&too_deep), Err(ConditionError::TooDeep { column: MAX_DEPTH + 1 }));
        assert_eq!(err(&too_deep), format!("at column {}: parentheses nest deeper than 32", MAX_DEPTH + 1));
        // Siblings do not add up.
        let wide = vec!["(((a=1)))"; 50].join(" && ");
        assert!(parse(&wide).is_ok());

        let long_ok = format!("a={}", "x".repeat(MAX_LEN - 2));
        assert!(parse(&long_ok).is_ok());
        let too_long = format!("a={}", "x".repeat(MAX_LEN - 1));
        assert_eq!(err(&too_long), "the condition is 4097 bytes long; at most 4096 are allowed");
    }

    #[test]
    fn matching() {
        assert!(value_matches("abc", "abc"));
        assert!(!value_matches("abc", "abcd"));
        assert!(!value_matches("abcd", "abc"));
        assert!(value_matches("", ""));
        assert!(!value_matches("", "x"));
        assert!(value_matches("*", ""));
        assert!(value_matches("*", "anything at all"));
        assert!(value_matches("a*", "a"));
        assert!(value_matches("a*", "abc"));
        assert!(!value_matches("a*", "ba"));
        assert!(value_matches("*c", "abc"));
        assert!(value_matches("a*c", "abbbc"));
        assert!(value_matches("a*b*c", "aXbYbZc"));
        assert!(!value_matches("a*b*c", "aXbYbZ"));
        assert!(value_matches("**", "x"));
        assert!(value_matches("é*ü", "éaü"));
        assert!(!value_matches("?", "x"), "only `*` is special");
        assert!(value_matches("a?", "a?"));
    }

    #[test]
    fn eval_semantics() {
        let p = params(&[("sys.usb.config", "hdc"), ("empty", ""), ("n", "42")]);
        assert!(eval_with(&parse("sys.usb.config=hdc").unwrap(), &p));
        assert!(!eval_with(&parse("sys.usb.config=mtp").unwrap(), &p));
        assert!(eval_with(&parse("sys.usb.config=*").unwrap(), &p));
        assert!(eval_with(&parse("sys.usb.config=h*").unwrap(), &p));
        // Unset parameters never match, not even `*` or the empty value.
        assert!(!eval_with(&parse("unset=*").unwrap(), &p));
        assert!(!eval_with(&parse("unset=").unwrap(), &p));
        assert!(eval_with(&parse("empty=").unwrap(), &p));
        assert!(eval_with(&parse("empty=*").unwrap(), &p));
        assert!(!eval_with(&parse("empty=x").unwrap(), &p));
        assert!(eval_with(&parse("n=1 || (n=4* && empty=)").unwrap(), &p));
        assert!(!eval_with(&parse("n=42 && unset=*").unwrap(), &p));
    }

    #[test]
    fn names_are_unique_in_order() {
        let e = parse("b=1 && (a=2 || b=3) && c=*").unwrap();
        assert_eq!(e.names(), vec!["b", "a", "c"]);
    }

    #[test]
    fn display_is_fully_parenthesized() {
        let e = parse("a=1 || b=2 && c=*").unwrap();
        assert_eq!(e.to_string(), "(a=1 || (b=2 && c=*))");
        assert_eq!(parse(&e.to_string()), Ok(e));
        assert_eq!(cmp("x", "").to_string(), "x=");
    }

    #[test]
    fn job_triggers() {
        let job = |name: &str, condition: Option<&str>| Job { name: name.into(), condition: condition.map(Into::into), cmds: Vec::new() };
        assert_eq!(job_trigger(&job("boot", None)), None);
        assert_eq!(job_trigger(&job("boot", Some("  "))), None);
        assert_eq!(job_trigger(&job("boot", Some("const.debuggable=1"))), Some(Ok(cmp("const.debuggable", "1"))));
        assert_eq!(job_trigger(&job("param:sys.usb.config=hdc", None)), Some(Ok(cmp("sys.usb.config", "hdc"))));
        assert_eq!(
            job_trigger(&job("param:usb", Some("sys.usb.config=hdc && sys.usb.configfs=1"))),
            Some(Ok(and(cmp("sys.usb.config", "hdc"), cmp("sys.usb.configfs", "1"))))
        );
        assert_eq!(job_trigger(&job("param:", None)), Some(Err(ConditionError::Empty)));
        assert!(matches!(job_trigger(&job("param:oops", None)), Some(Err(ConditionError::ExpectedEquals { .. }))));
        assert!(matches!(job_trigger(&job("early-boot", Some("a=1 &"))), Some(Err(ConditionError::SingleOperator { .. }))));
    }

    #[test]
    fn boot_stages_are_terms_and_param_prefix_is_dropped() {
        let e = parse("boot && param:persist.sys.usb.config=*").unwrap();
        assert_eq!(e, and(Expr::Stage("boot".into()), cmp("persist.sys.usb.config", "*")));
        assert_eq!(e.stages(), vec!["boot"]);
        assert_eq!(e.names(), vec!["persist.sys.usb.config"]);
        let p = params(&[("persist.sys.usb.config", "hdc")]);
        assert!(!e.eval_with(&|n| p.get(n).cloned(), &|_| false), "before boot");
        assert!(e.eval_with(&|n| p.get(n).cloned(), &|s| s == "boot"), "after boot");
        assert_eq!(parse(&e.to_string()), Ok(e));
        // A bare word that is not a stage is still an error.
        assert!(matches!(parse("bootx && a=1"), Err(ConditionError::ExpectedEquals { .. })));
        assert!(matches!(parse("post-fs-data || a=1"), Ok(Expr::Or(..))));
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let name = "[A-Za-z0-9_.@:-]{1,10}".prop_filter("a param: prefix is dropped when parsed", |n: &String| !n.starts_with("param:"));
        let value = "[^\\s&|()]{0,10}";
        let leaf = (name, value).prop_map(|(name, pattern)| Expr::Cmp { name, pattern });
        leaf.prop_recursive(8, 64, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    /// Expressions over a few fixed names whose values are "1" or unset, so
    /// `eval` can be compared with plain boolean logic.
    fn arb_bool_expr() -> impl Strategy<Value = Expr> {
        let leaf = prop::sample::select(vec!["p0", "p1", "p2", "p3"]).prop_map(|n| Expr::Cmp { name: n.to_owned(), pattern: "1".to_owned() });
        leaf.prop_recursive(6, 48, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    fn truth(e: &Expr, set: &[bool; 4]) -> bool {
        match e {
            Expr::Cmp { name, .. } => name[1..].parse::<usize>().is_ok_and(|i| set[i]),
            Expr::Stage(_) => false,
            Expr::And(a, b) => truth(a, set) && truth(b, set),
            Expr::Or(a, b) => truth(a, set) || truth(b, set),
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_grammar_soup(
            parts in prop::collection::vec(
                prop::sample::select(vec!["(", ")", "&&", "||", "&", "|", "=", " ", "a", "b.c", "*", "é", "\t"]),
                0..64,
            )
        ) {
            let s = parts.concat();
            if let Ok(e) = parse(&s) {
                // Whatever parses prints to something that parses the same.
                prop_assert_eq!(parse(&e.to_string()), Ok(e));
            }
        }

        #[test]
        fn print_parse_round_trip(e in arb_expr()) {
            let printed = e.to_string();
            prop_assert_eq!(parse(&printed), Ok(e));
        }

        #[test]
        fn eval_is_boolean_logic(e in arb_bool_expr(), set in any::<[bool; 4]>()) {
            let get = |n: &str| {
                n.strip_prefix('p')
                    .and_then(|i| i.parse::<usize>().ok())
                    .filter(|&i| i < 4 && set[i])
                    .map(|_| "1".to_owned())
            };
            prop_assert_eq!(e.eval(&get), truth(&e, &set));
        }

        #[test]
        fn star_matches_everything(v in any::<String>()) {
            prop_assert!(value_matches("*", &v));
            prop_assert!(value_matches(&v.replace('*', ""), &v.replace('*', "")));
        }
    }
}
