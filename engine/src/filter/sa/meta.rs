//! `meta` rule expressions: rule names combined with Perl's `&&`, `||`, `!`,
//! arithmetic and comparisons, evaluated on hit counts.

/// A parsed `meta` expression. Its rules are named (`R = String`, as
/// parsed) or, once [`MetaExpr::resolve`]d, indices ([`Resolved`]).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaExpr<R = String> {
    /// A rule: its hit count (0 when it did not hit).
    Rule(R),
    /// A number literal.
    Number(f64),
    /// `!e`: 1 when `e` is 0, else 0.
    Not(Box<MetaExpr<R>>),
    /// `-e`.
    Neg(Box<MetaExpr<R>>),
    /// A binary operation.
    Binary(BinOp, Box<MetaExpr<R>>, Box<MetaExpr<R>>),
}

/// A [`MetaExpr`] whose rule names are indices (see [`MetaExpr::resolve`];
/// an unknown rule became `Number(0.0)`).
pub type Resolved = MetaExpr<usize>;

/// Binary operators of `meta` expressions, in Perl's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `&&`: the left value when it is 0, else the right one.
    And,
    /// `||`: the left value when it is not 0, else the right one.
    Or,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (division by zero gives 0).
    Div,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
}

impl<R> MetaExpr<R> {
    /// Evaluates the expression; `hit` gives a rule's hit count (0 for no hit).
    #[must_use]
    pub fn eval(&self, hit: &dyn Fn(&R) -> f64) -> f64 {
        match self {
            Self::Rule(r) => hit(r),
            Self::Number(n) => *n,
            Self::Not(e) => truth(e.eval(hit) == 0.0),
            Self::Neg(e) => -e.eval(hit),
            Self::Binary(op, l, r) => op.apply(l.eval(hit), || r.eval(hit)),
        }
    }
}

fn truth(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

impl BinOp {
    /// `left op right` in Perl's meaning; `right` is evaluated only when
    /// needed (`&&` and `||` short-circuit).
    fn apply(self, lv: f64, right: impl FnOnce() -> f64) -> f64 {
        match self {
            BinOp::And if lv == 0.0 => lv,
            BinOp::Or if lv != 0.0 => lv,
            BinOp::And | BinOp::Or => right(),
            _ => {
                let rv = right();
                match self {
                    BinOp::Add => lv + rv,
                    BinOp::Sub => lv - rv,
                    BinOp::Mul => lv * rv,
                    BinOp::Div if rv == 0.0 => 0.0,
                    BinOp::Div => lv / rv,
                    BinOp::Lt => truth(lv < rv),
                    BinOp::Le => truth(lv <= rv),
                    BinOp::Gt => truth(lv > rv),
                    BinOp::Ge => truth(lv >= rv),
                    BinOp::Eq => truth(lv == rv),
                    BinOp::Ne | BinOp::And | BinOp::Or => truth(lv != rv),
                }
            }
        }
    }
}

impl MetaExpr {
    /// The expression with every rule name replaced by `index(name)` (`None`
    /// for an unknown rule, which counts as 0): evaluated without looking up
    /// names on every message.
    #[must_use]
    pub fn resolve(&self, index: &dyn Fn(&str) -> Option<usize>) -> Resolved {
        match self {
            Self::Rule(name) => index(name).map_or(Resolved::Number(0.0), Resolved::Rule),
            Self::Number(n) => Resolved::Number(*n),
            Self::Not(e) => Resolved::Not(Box::new(e.resolve(index))),
            Self::Neg(e) => Resolved::Neg(Box::new(e.resolve(index))),
            Self::Binary(op, l, r) => {
                Resolved::Binary(*op, Box::new(l.resolve(index)), Box::new(r.resolve(index)))
            }
        }
    }

    /// The rule names the expression refers to, in order, with repeats.
    #[must_use]
    pub fn rules(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Rule(n) => out.push(n),
            Self::Number(_) => {}
            Self::Not(e) | Self::Neg(e) => e.collect(out),
            Self::Binary(_, l, r) => {
                l.collect(out);
                r.collect(out);
            }
        }
    }

    /// Parses an expression; on error returns the 0-based byte offset in
    /// `text` and a message.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let tokens = lex(text)?;
        // A chain of one operator nests as deep as it is long (`A + B + C`
        // is `(A + B) + C`), and evaluating, compiling and dropping the
        // tree recurse that deep. The stock rules' longest meta has about
        // 250 tokens.
        if let Some((at, _)) = tokens.get(MAX_TOKENS) {
            return Err((
                *at,
                format!("meta expression too long: more than {MAX_TOKENS} tokens"),
            ));
        }
        let mut p = Parser {
            tokens,
            pos: 0,
            end: text.len(),
            depth: 0,
        };
        let e = p.expr(0)?;
        match p.tokens.get(p.pos) {
            None => Ok(e),
            Some((at, t)) => Err((*at, format!("unexpected `{}`", t.show()))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(f64),
    Op(&'static str),
}

impl Tok {
    fn show(&self) -> String {
        match self {
            Self::Name(n) => n.clone(),
            Self::Num(n) => n.to_string(),
            Self::Op(o) => (*o).to_owned(),
        }
    }
}

const OPS: &[&str] = &[
    "&&", "||", "<=", ">=", "==", "!=", "!", "+", "-", "*", "/", "<", ">", "(", ")",
];

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, (usize, String)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push((start, Tok::Name(text[start..i].to_owned())));
        } else if c.is_ascii_digit() || c == b'.' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let n = text[start..i]
                .parse::<f64>()
                .map_err(|_| (start, format!("bad number `{}`", &text[start..i])))?;
            out.push((start, Tok::Num(n)));
        } else if let Some(op) = OPS.iter().find(|op| text[i..].starts_with(**op)) {
            out.push((i, Tok::Op(op)));
            i += op.len();
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err((i, format!("unexpected character `{ch}` in meta expression")));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

/// Binding power of binary operators (Perl precedence, higher binds tighter).
fn binary(op: &str) -> Option<(u8, BinOp)> {
    Some(match op {
        "||" => (1, BinOp::Or),
        "&&" => (2, BinOp::And),
        "==" => (3, BinOp::Eq),
        "!=" => (3, BinOp::Ne),
        "<" => (4, BinOp::Lt),
        "<=" => (4, BinOp::Le),
        ">" => (4, BinOp::Gt),
        ">=" => (4, BinOp::Ge),
        "+" => (5, BinOp::Add),
        "-" => (5, BinOp::Sub),
        "*" => (6, BinOp::Mul),
        "/" => (6, BinOp::Div),
        _ => return None,
    })
}

const MAX_DEPTH: usize = 200;
const MAX_TOKENS: usize = 2_000;

impl Parser {
    fn here(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.0)
    }

    fn expr(&mut self, min: u8) -> Result<MetaExpr, (usize, String)> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((self.here(), "meta expression nested too deeply".to_owned()));
        }
        let mut left = self.unary()?;
        while let Some((_, Tok::Op(op))) = self.tokens.get(self.pos) {
            let Some((power, bin)) = binary(op) else {
                break;
            };
            if power <= min {
                break;
            }
            self.pos += 1;
            let right = self.expr(power)?;
            left = MetaExpr::Binary(bin, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn unary(&mut self) -> Result<MetaExpr, (usize, String)> {
        let at = self.here();
        let Some((_, tok)) = self.tokens.get(self.pos).cloned() else {
            return Err((at, "expression ends early".to_owned()));
        };
        self.pos += 1;
        match tok {
            Tok::Name(n) => Ok(MetaExpr::Rule(n)),
            Tok::Num(n) => Ok(MetaExpr::Number(n)),
            Tok::Op("!") => Ok(MetaExpr::Not(Box::new(self.unary_nested()?))),
            Tok::Op("-") => Ok(MetaExpr::Neg(Box::new(self.unary_nested()?))),
            Tok::Op("+") => self.unary_nested(),
            Tok::Op("(") => {
                let e = self.expr(0)?;
                match self.tokens.get(self.pos) {
                    Some((_, Tok::Op(")"))) => {
                        self.pos += 1;
                        Ok(e)
                    }
                    _ => Err((self.here(), "missing `)`".to_owned())),
                }
            }
            t => Err((at, format!("unexpected `{}`", t.show()))),
        }
    }

    fn unary_nested(&mut self) -> Result<MetaExpr, (usize, String)> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((self.here(), "meta expression nested too deeply".to_owned()));
        }
        let e = self.unary();
        self.depth -= 1;
        e
    }
}

/// One step of a [`Program`]: a stack machine over `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    /// Push a rule's value: its count when it hit, else 0.
    Rule(usize),
    /// Push an earlier meta's value: 1 when it hit, else 0.
    Meta(usize),
    Number(f64),
    Not,
    Neg,
    /// Pop the right operand, combine it with the left one on top.
    Binary(BinOp),
    /// `&&` after its left operand: when that is 0 it is the result (jump
    /// past the right operand), else it is popped.
    And(usize),
    /// `||` after its left operand: when that is not 0 it is the result.
    Or(usize),
}

/// One meta of a [`Program`].
#[derive(Debug, Clone)]
struct MetaCode {
    rule: usize,
    /// Its code: `ops[start..end]`.
    start: usize,
    end: usize,
    /// Whether it hits when no rule outside the program hits.
    baseline: bool,
    /// The later metas that read it.
    readers: Vec<usize>,
}

/// Resolved meta expressions compiled, in order, into one flat program.
/// Every message evaluates about a thousand stock metas, and walking a
/// thousand boxed trees through a `dyn` callback cost more than the evals.
///
/// Most rules do not hit on a given message, so most metas take the value
/// they have when no rule hits (their baseline, computed here once). A run
/// starts every meta at its baseline and evaluates only the metas that
/// read a rule that hit, or an earlier meta that left its baseline.
///
/// [`Program::run`] sets the hits that evaluating each expression in turn
/// with [`MetaExpr::eval`] sets, where a meta reads a rule's count when it
/// hit (0 when not), an earlier meta as 1 or 0 (the scanner's count for a
/// meta is 1) and a meta not evaluated yet (itself, or a later one: a
/// cycle) as 0.
#[derive(Debug, Clone, Default)]
pub struct Program {
    ops: Vec<Op>,
    metas: Vec<MetaCode>,
    /// Every rule a meta reads that is not one of the program's metas,
    /// with the metas (positions) that read it.
    inputs: Vec<(usize, Vec<usize>)>,
}

/// A [`Program`]'s working space, reused across runs.
#[derive(Debug, Default)]
pub struct Scratch {
    stack: Vec<f64>,
    /// Metas (positions) still to evaluate.
    dirty: Vec<u64>,
}

impl Program {
    /// Compiles `metas` (the meta's rule index and its expression) to run
    /// one after the other: a meta may read the metas before it.
    #[must_use]
    pub fn new<'a>(metas: impl IntoIterator<Item = (usize, &'a Resolved)>) -> Program {
        let metas: Vec<(usize, &Resolved)> = metas.into_iter().collect();
        let mut position: std::collections::HashMap<usize, usize> =
            std::collections::HashMap::new();
        for (p, (rule, _)) in metas.iter().enumerate() {
            position.entry(*rule).or_insert(p);
        }
        let mut program = Program::default();
        let mut inputs: std::collections::BTreeMap<usize, Vec<usize>> =
            std::collections::BTreeMap::new();
        let mut reads: Vec<usize> = Vec::new();
        for (p, (rule, expr)) in metas.iter().enumerate() {
            let start = program.ops.len();
            reads.clear();
            emit(expr, &mut program.ops, &|r| match position.get(&r) {
                Some(&q) if q < p => Op::Meta(r),
                // not evaluated yet when this one is: 0
                Some(_) => Op::Number(0.0),
                None => Op::Rule(r),
            });
            for op in &program.ops[start..] {
                match *op {
                    Op::Rule(r) => inputs.entry(r).or_default().push(p),
                    Op::Meta(r) => reads.push(position[&r]),
                    _ => {}
                }
            }
            for &q in &reads {
                if program.metas[q].readers.last() != Some(&p) {
                    program.metas[q].readers.push(p);
                }
            }
            program.metas.push(MetaCode {
                rule: *rule,
                start,
                end: program.ops.len(),
                baseline: false,
                readers: Vec::new(),
            });
        }
        for list in inputs.values_mut() {
            list.dedup();
        }
        program.inputs = inputs.into_iter().collect();
        // the baselines: every meta in turn with no other rule hit
        let rules = metas.iter().map(|(r, _)| r + 1).max().unwrap_or(0);
        let mut hit = vec![false; rules];
        let mut stack = Vec::new();
        for p in 0..program.metas.len() {
            let now = program.value(p, &hit, &[], &mut stack) != 0.0;
            program.metas[p].baseline = now;
            hit[program.metas[p].rule] = now;
        }
        program
    }

    /// Runs every meta: sets `hit[meta]` from its value, which reads a
    /// rule's `counts` entry where `hit` says it hit and 0 elsewhere (an
    /// index past either slice reads 0, and a meta past `hit` is not
    /// stored).
    pub fn run(&self, hit: &mut [bool], counts: &[f64], scratch: &mut Scratch) {
        for meta in &self.metas {
            if let Some(h) = hit.get_mut(meta.rule) {
                *h = meta.baseline;
            }
        }
        let dirty = &mut scratch.dirty;
        dirty.clear();
        dirty.resize(self.metas.len().div_ceil(64), 0);
        let mark = |dirty: &mut [u64], p: usize| dirty[p / 64] |= 1 << (p % 64);
        for (rule, readers) in &self.inputs {
            if hit.get(*rule) == Some(&true) {
                for &p in readers {
                    mark(dirty, p);
                }
            }
        }
        // readers come after what they read: one pass in position order
        let mut w = 0usize;
        while let Some(&bits) = dirty.get(w) {
            if bits == 0 {
                w += 1;
                continue;
            }
            let p = w * 64 + bits.trailing_zeros() as usize;
            dirty[w] &= bits - 1;
            let meta = &self.metas[p];
            let now = self.value(p, hit, counts, &mut scratch.stack) != 0.0;
            if let Some(h) = hit.get_mut(meta.rule) {
                *h = now;
            }
            if now != meta.baseline {
                for &q in &meta.readers {
                    mark(dirty, q);
                }
            }
        }
    }

    /// The value of the meta at position `p`.
    fn value(&self, p: usize, hit: &[bool], counts: &[f64], stack: &mut Vec<f64>) -> f64 {
        let MetaCode { start, end, .. } = self.metas[p];
        stack.clear();
        let mut pc = start;
        while pc < end {
            let op = self.ops[pc];
            pc += 1;
            match op {
                Op::Rule(r) => {
                    let value = match hit.get(r) {
                        Some(true) => counts.get(r).copied().unwrap_or(0.0),
                        _ => 0.0,
                    };
                    stack.push(value);
                }
                Op::Meta(r) => stack.push(truth(hit.get(r) == Some(&true))),
                Op::Number(n) => stack.push(n),
                Op::Not => {
                    if let Some(top) = stack.last_mut() {
                        *top = truth(*top == 0.0);
                    }
                }
                Op::Neg => {
                    if let Some(top) = stack.last_mut() {
                        *top = -*top;
                    }
                }
                Op::Binary(op) => {
                    let rv = stack.pop().unwrap_or(0.0);
                    if let Some(top) = stack.last_mut() {
                        *top = op.apply(*top, || rv);
                    }
                }
                Op::And(to) => {
                    if stack.last().is_some_and(|&lv| lv == 0.0) {
                        pc = to;
                    } else {
                        stack.pop();
                    }
                }
                Op::Or(to) => {
                    if stack.last().is_some_and(|&lv| lv != 0.0) {
                        pc = to;
                    } else {
                        stack.pop();
                    }
                }
            }
        }
        stack.pop().unwrap_or(0.0)
    }
}

/// Appends `expr`'s code: it leaves the expression's value on the stack.
/// `read` gives the op that reads a rule.
fn emit(expr: &Resolved, ops: &mut Vec<Op>, read: &dyn Fn(usize) -> Op) {
    match expr {
        MetaExpr::Rule(r) => ops.push(read(*r)),
        MetaExpr::Number(n) => ops.push(Op::Number(*n)),
        MetaExpr::Not(e) => {
            emit(e, ops, read);
            ops.push(Op::Not);
        }
        MetaExpr::Neg(e) => {
            emit(e, ops, read);
            ops.push(Op::Neg);
        }
        MetaExpr::Binary(op @ (BinOp::And | BinOp::Or), l, r) => {
            emit(l, ops, read);
            let jump = ops.len();
            ops.push(Op::And(0));
            emit(r, ops, read);
            let past = ops.len();
            ops[jump] = if *op == BinOp::And {
                Op::And(past)
            } else {
                Op::Or(past)
            };
        }
        MetaExpr::Binary(op, l, r) => {
            emit(l, ops, read);
            emit(r, ops, read);
            ops.push(Op::Binary(*op));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(text: &str, hits: &[(&str, f64)]) -> f64 {
        let e = MetaExpr::parse(text)
            .map_err(|e| format!("{e:?}"))
            .unwrap_or_else(|e| {
                panic!("{text}: {e}");
            });
        let by_name = e.eval(&|n: &String| hits.iter().find(|h| h.0 == n).map_or(0.0, |h| h.1));
        // the resolved form (names as indices; unknown names are 0) agrees
        let names = ["A", "B", "C"];
        let resolved = e.resolve(&|n| names.iter().position(|k| *k == n));
        let by_index =
            resolved.eval(&|&i| hits.iter().find(|h| h.0 == names[i]).map_or(0.0, |h| h.1));
        assert_eq!(by_name.to_bits(), by_index.to_bits(), "{text}");
        // and so does the compiled program (meta index 3, after A, B, C)
        let program = Program::new([(3, &resolved)]);
        let mut hit = [false; 4];
        let mut counts = [0.0; 4];
        for (name, count) in hits {
            if let Some(i) = names.iter().position(|k| k == name) {
                hit[i] = true;
                counts[i] = *count;
            }
        }
        program.run(&mut hit, &counts, &mut Scratch::default());
        assert_eq!(hit[3], by_name != 0.0, "{text}");
        by_name
    }

    #[test]
    fn evaluates() {
        assert_eq!(ev("A && !B", &[("A", 1.0)]), 1.0);
        assert_eq!(ev("A && !B", &[("A", 1.0), ("B", 1.0)]), 0.0);
        assert_eq!(ev("(A + B + C) > 1", &[("A", 1.0), ("C", 1.0)]), 1.0);
        assert_eq!(ev("(A + B + C) > 1", &[("A", 1.0)]), 0.0);
        assert_eq!(ev("A || B", &[("B", 3.0)]), 3.0);
        assert_eq!(ev("1 + 2 * 3 - 4 / 2", &[]), 5.0);
        assert_eq!(
            ev("A >= 2 && A <= 3 && A == 3 && A != 2", &[("A", 3.0)]),
            1.0
        );
        assert_eq!(ev("-A + 1", &[("A", 3.0)]), -2.0);
        assert_eq!(ev("A / 0", &[("A", 3.0)]), 0.0);
        assert_eq!(ev("!(A || B) || C", &[("C", 1.0)]), 1.0);
    }

    #[test]
    fn errors() {
        assert_eq!(MetaExpr::parse("A &&").err().map(|e| e.0), Some(4));
        assert_eq!(MetaExpr::parse("(A").err().map(|e| e.0), Some(2));
        assert_eq!(MetaExpr::parse("A B").err().map(|e| e.0), Some(2));
        assert_eq!(MetaExpr::parse("A $ B").err().map(|e| e.0), Some(2));
        let deep = "(".repeat(1000) + "A" + &")".repeat(1000);
        assert!(MetaExpr::parse(&deep).is_err());
        // a long chain nests as deep as it is long: refused with its place
        let long = "A + ".repeat(100_000) + "A";
        assert_eq!(MetaExpr::parse(&long).err().map(|e| e.0), Some(4_000));
        let fine = "A + ".repeat(900) + "A";
        assert!(MetaExpr::parse(&fine).is_ok());
        let e = MetaExpr::parse("A && (B || !C)").map_err(|e| e.1);
        assert_eq!(e.as_ref().map(MetaExpr::rules), Ok(vec!["A", "B", "C"]));
    }

    fn expr() -> impl proptest::strategy::Strategy<Value = Resolved> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            (0usize..7).prop_map(Resolved::Rule),
            prop_oneof![Just(0.0), Just(1.0), Just(2.0), Just(-1.0), Just(0.5)]
                .prop_map(Resolved::Number),
        ];
        leaf.prop_recursive(5, 40, 2, |inner| {
            let op = prop_oneof![
                Just(BinOp::And),
                Just(BinOp::Or),
                Just(BinOp::Add),
                Just(BinOp::Sub),
                Just(BinOp::Mul),
                Just(BinOp::Div),
                Just(BinOp::Lt),
                Just(BinOp::Le),
                Just(BinOp::Gt),
                Just(BinOp::Ge),
                Just(BinOp::Eq),
                Just(BinOp::Ne),
            ];
            prop_oneof![
                inner.clone().prop_map(|e| Resolved::Not(Box::new(e))),
                inner.clone().prop_map(|e| Resolved::Neg(Box::new(e))),
                (op, inner.clone(), inner).prop_map(|(op, l, r)| Resolved::Binary(
                    op,
                    Box::new(l),
                    Box::new(r)
                )),
            ]
        })
    }

    proptest::proptest! {
        /// The program sets the same hits as evaluating the trees in turn.
        /// Rules 0-3 are given; metas 5, 4 and 6 run in that order, so
        /// each may read a meta before it, after it or itself (as 0).
        #[test]
        fn program_equals_tree_walk(
            exprs in proptest::collection::vec(expr(), 3),
            given in proptest::collection::vec((proptest::bool::ANY, -2i8..4), 4),
        ) {
            let mut hit = [false; 7];
            let mut counts = [1.0f64; 7];
            for (i, (h, c)) in given.iter().enumerate() {
                hit[i] = *h;
                counts[i] = f64::from(*c);
            }
            let order = [5usize, 4, 6];
            let mut want = hit;
            for (m, e) in order.iter().zip(&exprs) {
                let value = e.eval(&|&r: &usize| if want[r] { counts[r] } else { 0.0 });
                want[*m] = value != 0.0;
            }
            let program = Program::new(order.iter().copied().zip(&exprs));
            let mut scratch = Scratch::default();
            program.run(&mut hit, &counts, &mut scratch);
            proptest::prop_assert_eq!(hit, want);
            // the scratch is reused across runs
            let mut again = [false; 7];
            again[..4].copy_from_slice(&hit[..4]);
            program.run(&mut again, &counts, &mut scratch);
            proptest::prop_assert_eq!(again, want);
        }
    }
}
