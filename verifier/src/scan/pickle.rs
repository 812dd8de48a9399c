//! A symbolic pickle decoder for protocols 0–5.
//!
//! It runs the unpickling machine without executing anything: the stack and memo hold symbolic
//! values, `GLOBAL`/`STACK_GLOBAL`/`INST`/`EXT*` record imports, and `REDUCE`/`NEWOBJ`/`OBJ`/`INST`
//! record calls, each judged against the allowlist of the stream's context. Because the model is
//! faithful (MARK metastack, `MEMOIZE` numbering, `DUP`, `POP` of a mark), tricks that desynchronise
//! string-matching scanners do not hide a `STACK_GLOBAL` from it.
//!
//! Fail closed: an unknown opcode, a stack underflow, a truncated stream or a bomb (memo, stack,
//! mark or length limits) stops decoding with a reason, which the caller reports.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::rc::Rc;

use super::policy::{self, Context, Decision, Lookup, Use};
use super::{malformed, Format, Severity, Sink, Stop};

/// Most memo entries a stream may create. Real checkpoints use a few per tensor.
const MAX_MEMO: usize = 1 << 20;
/// Deepest stack (and metastack) the decoder follows.
const MAX_STACK: usize = 1 << 20;
const MAX_MARKS: usize = 1 << 16;
/// Text arguments (GLOBAL names, INT, …) are lines; none is legitimately longer.
const MAX_LINE: usize = 1 << 16;
/// Strings longer than this are not kept (only their length); names are far shorter.
const KEEP_STR: u64 = 1 << 12;
/// Elements kept per symbolic collection; the rest are counted, not stored.
const KEEP_ITEMS: usize = 64;
/// Longest single argument accepted (a `BINBYTES8` of a real tensor can be GBs, but not more).
const MAX_ARG: u64 = 1 << 40;
/// Nested pickles (joblib object arrays) deeper than this are refused.
const MAX_NEST: u32 = 4;

/// A byte source that knows its position, for offsets in findings.
pub(crate) struct Input<R> {
    inner: R,
    pos: u64,
}

impl<R: BufRead> Input<R> {
    pub(crate) fn new(inner: R, pos: u64) -> Self {
        Input { inner, pos }
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// The next byte without consuming it, or `None` at the end.
    pub(crate) fn peek(&mut self) -> Result<Option<u8>, Stop> {
        let buf = self.inner.fill_buf()?;
        Ok(buf.first().copied())
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    pub(crate) fn exact(&mut self, buf: &mut [u8]) -> Result<(), Stop> {
        let at = self.pos;
        self.inner.read_exact(buf).or_else(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => malformed(at, "truncated stream"),
            _ => Err(Stop::Io(e)),
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut b = [0u8; N];
        self.exact(&mut b)?;
        Ok(b)
    }

    /// Discards `n` bytes without buffering them.
    pub(crate) fn skip(&mut self, n: u64) -> Result<(), Stop> {
        let at = self.pos;
        let got = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())?;
        self.pos += got;
        if got < n {
            return malformed(at, format!("truncated: {n} bytes declared, {got} present"));
        }
        Ok(())
    }

    /// Reads `n` bytes if `n <= keep`, otherwise skips them; `None` when skipped.
    fn take(&mut self, n: u64, keep: u64) -> Result<Option<Vec<u8>>, Stop> {
        if n > MAX_ARG {
            return malformed(self.pos, format!("argument length {n} exceeds limit"));
        }
        if n > keep {
            self.skip(n)?;
            return Ok(None);
        }
        let len = usize::try_from(n).map_err(|_| Stop::Malformed {
            offset: self.pos,
            reason: "length".into(),
        })?;
        let mut v = vec![0u8; len];
        self.exact(&mut v)?;
        Ok(Some(v))
    }

    fn line(&mut self) -> Result<Vec<u8>, Stop> {
        let at = self.pos;
        let mut out = Vec::new();
        loop {
            let b = self
                .byte()
                .or_else(|_| malformed(at, "truncated text argument"))?;
            if b == b'\n' {
                return Ok(out);
            }
            if out.len() >= MAX_LINE {
                return malformed(at, "text argument longer than 64 KiB");
            }
            out.push(b);
        }
    }
}

/// A symbolic Python value.
#[derive(Clone, Debug)]
enum V {
    None,
    Bool,
    Int(i64),
    BigInt(Vec<u8>),
    Float,
    Str(Rc<str>),
    LongStr(u64),
    Bytes(u64),
    /// An immutable tuple and its nesting depth.
    Tuple(Rc<Vec<V>>, u16),
    List(Rc<RefCell<Vec<V>>>),
    Dict(Rc<RefCell<Vec<(V, V)>>>),
    Set,
    Global(Rc<Global>),
    Obj(Rc<Obj>),
    Persistent,
    Buffer,
    /// A value nested too deeply to keep (its content no longer matters for any check).
    Opaque,
}

#[derive(Debug)]
struct Global {
    module: String,
    name: String,
    lookup: Lookup,
}

impl Global {
    fn full(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

#[derive(Debug)]
struct Obj {
    callee: V,
    args: V,
    depth: u16,
}

/// Symbolic values nest at most this deep. Dropping a nested `Rc` structure recurses, so without
/// a bound a pickle of a million nested tuples would overflow the stack when freed.
const MAX_VALUE_DEPTH: u16 = 64;

/// How deeply `v` nests. Mutable containers count as 5: their elements are kept shallow (see
/// `shallow`), so they never nest deeper than that, whatever is appended later.
fn depth(v: &V) -> u16 {
    match v {
        V::Tuple(_, d) => *d,
        V::Obj(o) => o.depth,
        V::List(_) | V::Dict(_) => 5,
        _ => 0,
    }
}

/// Replaces a value nested too deeply to put inside another.
fn cap(v: V) -> V {
    if depth(&v) >= MAX_VALUE_DEPTH {
        V::Opaque
    } else {
        v
    }
}

/// What a mutable container may hold: no mutable containers and only shallow immutable ones,
/// so appending to a list already inside other values can never deepen them.
fn shallow(v: V) -> V {
    if matches!(v, V::List(_) | V::Dict(_)) || depth(&v) > 3 {
        V::Opaque
    } else {
        v
    }
}

fn tuple(items: Vec<V>) -> V {
    let items: Vec<V> = items.into_iter().map(cap).collect();
    let d = 1 + items.iter().map(depth).max().unwrap_or(0);
    V::Tuple(Rc::new(items), d)
}

fn push_capped<T>(v: &mut Vec<T>, item: T) {
    if v.len() < KEEP_ITEMS {
        v.push(item);
    }
}

/// A short human description of a value for findings.
fn describe(v: &V, depth: u32) -> String {
    if depth > 3 {
        return "…".into();
    }
    match v {
        V::Global(g) => g.full(),
        V::Obj(o) => format!("{}(…)", describe(&o.callee, depth + 1)),
        V::Str(s) => {
            let t: String = s.chars().take(40).collect();
            format!("{t:?}")
        }
        V::Tuple(..) => "a tuple".into(),
        V::List(_) => "a list".into(),
        V::Dict(_) => "a dict".into(),
        V::Bytes(n) | V::LongStr(n) => format!("{n} bytes of data"),
        other => format!("{other:?}").chars().take(20).collect(),
    }
}

/// How one pickle ended.
pub(crate) struct Outcome {
    /// The unpickled value's shape, for callers that sniff (legacy torch magic number).
    result_is_torch_magic: bool,
    /// Offset just after STOP.
    pub(crate) end: u64,
    /// Whether a joblib array wrapper was seen.
    pub(crate) joblib: bool,
}

/// The state of one decoding run, shared by pickles nested inside it.
pub(crate) struct Decoder<'s> {
    ctx: Context,
    loc: &'s str,
    sink: &'s mut Sink,
    /// Imports seen so far (allowed ones are reported once, as Info).
    seen: HashSet<String>,
    /// Refused imports not (yet) called: reported at the end as imports.
    uncalled: HashMap<String, (u64, Severity, String)>,
    called: HashSet<String>,
    pub(crate) imports: usize,
    /// Calls (REDUCE, NEWOBJ, OBJ, INST) decoded so far.
    pub(crate) calls: usize,
    persistent_noted: bool,
    proto: u8,
    newer_noted: bool,
}

impl<'s> Decoder<'s> {
    pub(crate) fn new(ctx: Context, loc: &'s str, sink: &'s mut Sink) -> Self {
        Decoder {
            ctx,
            loc,
            sink,
            seen: HashSet::new(),
            uncalled: HashMap::new(),
            called: HashSet::new(),
            imports: 0,
            calls: 0,
            persistent_noted: false,
            proto: 0,
            newer_noted: false,
        }
    }

    /// Reports refused imports that were never called. Call once when done with the stream.
    pub(crate) fn finish(self) {
        let mut rest: Vec<_> = self
            .uncalled
            .into_iter()
            .filter(|(k, _)| !self.called.contains(k))
            .collect();
        rest.sort_by_key(|(_, (off, _, _))| *off);
        for (_, (off, sev, msg)) in rest {
            self.sink.add(sev, self.loc, Some(off), msg);
        }
    }

    /// Records an import. Names that are not Python identifiers cannot be imported (the loader
    /// raises before running anything), so they end decoding as malformed instead.
    fn import(&mut self, module: &str, name: &str, off: u64) -> Result<V, Stop> {
        if !is_dotted_identifier(module) || !is_dotted_identifier(name) {
            return malformed(
                off,
                format!("import of {module:?}.{name:?}, which are not Python names"),
            );
        }
        self.imports += 1;
        let full = format!("{module}.{name}");
        let lookup = policy::lookup(self.ctx, module, name, self.sink.configured());
        match policy::judge(&lookup, Use::Import) {
            Decision::Allowed(why) => {
                if self.seen.insert(full.clone()) {
                    self.sink.add(
                        Severity::Info,
                        self.loc,
                        Some(off),
                        format!("imports {full} (allowlisted: {why})"),
                    );
                }
                self.sink
                    .note_global(self.loc, off, module, name, "import", true, &why);
            }
            Decision::Refused(sev, msg) => {
                self.uncalled.entry(full.clone()).or_insert((
                    off,
                    sev,
                    format!("imports {full} ({msg})"),
                ));
                self.sink
                    .note_global(self.loc, off, module, name, "import", false, &msg);
            }
        }
        if matches!(lookup, Lookup::Configured) {
            self.sink.admitted(&full);
        }
        Ok(V::Global(Rc::new(Global {
            module: module.to_owned(),
            name: name.to_owned(),
            lookup,
        })))
    }

    /// Judges one use of a global and reports a refused one.
    fn judge_use(&mut self, g: &Global, how: Use, what: &str, off: u64) {
        let full = g.full();
        match policy::judge(&g.lookup, how) {
            Decision::Allowed(why) => {
                self.sink
                    .note_global(self.loc, off, &g.module, &g.name, what, true, &why);
            }
            Decision::Refused(sev, why) => {
                self.called.insert(full.clone());
                self.sink
                    .note_global(self.loc, off, &g.module, &g.name, what, false, &why);
                let verb = if how == Use::New {
                    "instantiates"
                } else {
                    "calls"
                };
                self.sink.add(
                    sev,
                    self.loc,
                    Some(off),
                    format!("{verb} {full} via {what} ({why})"),
                );
            }
        }
    }

    /// A call opcode: `REDUCE`/`INST`/`OBJ` call the callable, `NEWOBJ*` run `cls.__new__`.
    fn call(&mut self, callee: V, args: V, off: u64, how: &str) -> V {
        self.calls += 1;
        let usage = if how.starts_with("NEWOBJ") {
            Use::New
        } else {
            Use::Call
        };
        match &callee {
            V::Global(g) => {
                self.judge_use(g, usage, how, off);
                // A reconstructor that instantiates its first argument (copyreg._reconstructor,
                // numpy's _reconstruct, Cython unpicklers) makes that class a NEWOBJ target.
                if usage == Use::Call && policy::instantiates_first_argument(&g.module, &g.name) {
                    let first = match &args {
                        V::Tuple(t, _) => t.first().cloned(),
                        _ => None,
                    };
                    let what = format!("{} (first argument of {})", how, g.full());
                    // copyreg._reconstructor(cls, base, state) also runs base.__init__(obj,
                    // state) when base is not object, which calls base like REDUCE would.
                    if policy::runs_second_argument(&g.module, &g.name) {
                        if let V::Tuple(t, _) = &args {
                            if let Some(V::Global(base)) = t.get(1) {
                                if policy::canonical(&base.module, &base.name)
                                    != ("builtins".to_owned(), "object".to_owned())
                                {
                                    let w = format!("{} (base given to {})", how, g.full());
                                    self.judge_use(base, Use::Call, &w, off);
                                }
                            }
                        }
                    }
                    match first {
                        Some(V::Global(cls)) => self.judge_use(&cls, Use::New, &what, off),
                        other => {
                            let d = other.map_or_else(|| "nothing".to_owned(), |v| describe(&v, 0));
                            self.sink.add(
                                Severity::High,
                                self.loc,
                                Some(off),
                                format!(
                                    "{} instantiates a class that is not a plain import: {d}",
                                    g.full()
                                ),
                            );
                        }
                    }
                }
            }
            other => {
                let d = describe(other, 0);
                self.sink.add(
                    Severity::High,
                    self.loc,
                    Some(off),
                    format!("calls a computed callable, the result of {d} ({how})"),
                );
            }
        }
        let (callee, args) = (cap(callee), cap(args));
        let d = 1 + depth(&callee).max(depth(&args));
        V::Obj(Rc::new(Obj {
            callee,
            args,
            depth: d,
        }))
    }

    fn needs_proto(&mut self, op: u8, min: u8, off: u64) {
        if self.proto < min && !self.newer_noted {
            self.newer_noted = true;
            self.sink.add(
                Severity::Low,
                self.loc,
                Some(off),
                format!(
                    "opcode {op:#04x} belongs to protocol {min} but the stream declares {}",
                    self.proto
                ),
            );
        }
    }

    /// Decodes one pickle, from its first opcode to STOP.
    pub(crate) fn run<R: BufRead>(
        &mut self,
        inp: &mut Input<R>,
        nest: u32,
    ) -> Result<Outcome, Stop> {
        let mut m = Machine {
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        };
        let mut joblib = false;
        self.proto = 0;
        self.newer_noted = false;
        loop {
            let off = inp.pos();
            let op = inp
                .byte()
                .or_else(|_| malformed(off, "truncated pickle: no STOP opcode"))?;
            match op {
                b'(' => {
                    if m.marks.len() >= MAX_MARKS {
                        return malformed(off, "MARK nesting exceeds limit");
                    }
                    let old = std::mem::take(&mut m.stack);
                    m.marks.push(old);
                }
                b'.' => {
                    let v = m.pop(off)?;
                    let magic = matches!(&v, V::BigInt(b) if b.as_slice() == TORCH_MAGIC);
                    return Ok(Outcome {
                        result_is_torch_magic: magic,
                        end: inp.pos(),
                        joblib,
                    });
                }
                b'0' => {
                    if m.stack.pop().is_none() {
                        m.pop_mark(off)?;
                    }
                }
                b'1' => {
                    m.pop_mark(off)?;
                }
                b'2' => {
                    let v = m.top(off)?.clone();
                    m.push(v, off)?;
                }
                b'F' => {
                    inp.line()?;
                    m.push(V::Float, off)?;
                }
                b'I' => {
                    let l = inp.line()?;
                    let v = match l.as_slice() {
                        b"00" | b"01" => V::Bool,
                        s => parse_int_line(s)
                            .map(V::Int)
                            .unwrap_or_else(|| V::BigInt(s.to_vec())),
                    };
                    m.push(v, off)?;
                }
                b'L' => {
                    let l = inp.line()?;
                    let s = l.strip_suffix(b"L").unwrap_or(&l);
                    m.push(
                        parse_int_line(s)
                            .map(V::Int)
                            .unwrap_or(V::BigInt(Vec::new())),
                        off,
                    )?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(inp.le::<4>()?);
                    m.push(V::Int(i64::from(v)), off)?;
                }
                b'K' => {
                    let v = inp.byte()?;
                    m.push(V::Int(i64::from(v)), off)?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(inp.le::<2>()?);
                    m.push(V::Int(i64::from(v)), off)?;
                }
                0x8a => {
                    self.needs_proto(op, 2, off);
                    let n = inp.byte()?;
                    let b = inp.take(u64::from(n), 256)?.unwrap_or_default();
                    m.push(long_value(b), off)?;
                }
                0x8b => {
                    self.needs_proto(op, 2, off);
                    let n = i32::from_le_bytes(inp.le::<4>()?);
                    let n = u64::try_from(n)
                        .or_else(|_| malformed(off, "LONG4 with negative length"))?;
                    let b = inp.take(n, 256)?.unwrap_or_default();
                    m.push(long_value(b), off)?;
                }
                b'N' => m.push(V::None, off)?,
                0x88 | 0x89 => {
                    self.needs_proto(op, 2, off);
                    m.push(V::Bool, off)?;
                }
                b'G' => {
                    inp.le::<8>()?;
                    m.push(V::Float, off)?;
                }
                b'P' => {
                    inp.line()?;
                    self.persistent(off);
                    m.push(V::Persistent, off)?;
                }
                b'Q' => {
                    m.pop(off)?;
                    self.persistent(off);
                    m.push(V::Persistent, off)?;
                }
                b'R' => {
                    let args = m.pop(off)?;
                    let callee = m.pop(off)?;
                    let v = self.call(callee, args, off, "REDUCE");
                    m.push(v, off)?;
                }
                b'S' => {
                    let l = inp.line()?;
                    let s = unquote(&l);
                    let v = match s {
                        Some(s) => V::Str(Rc::from(s.as_str())),
                        None => return malformed(off, "STRING argument is not quoted"),
                    };
                    m.push(v, off)?;
                }
                b'T' => {
                    let n = i32::from_le_bytes(inp.le::<4>()?);
                    let n = u64::try_from(n)
                        .or_else(|_| malformed(off, "BINSTRING with negative length"))?;
                    let v = str_value(inp.take(n, KEEP_STR)?, n);
                    m.push(v, off)?;
                }
                b'U' => {
                    let n = u64::from(inp.byte()?);
                    let v = str_value(inp.take(n, KEEP_STR)?, n);
                    m.push(v, off)?;
                }
                b'V' => {
                    let l = inp.line()?;
                    let n = l.len() as u64;
                    m.push(str_value(Some(l), n), off)?;
                }
                b'X' => {
                    let n = u64::from(u32::from_le_bytes(inp.le::<4>()?));
                    let v = str_value(inp.take(n, KEEP_STR)?, n);
                    m.push(v, off)?;
                }
                0x8c => {
                    self.needs_proto(op, 4, off);
                    let n = u64::from(inp.byte()?);
                    let v = str_value(inp.take(n, KEEP_STR)?, n);
                    m.push(v, off)?;
                }
                0x8d => {
                    self.needs_proto(op, 4, off);
                    let n = u64::from_le_bytes(inp.le::<8>()?);
                    let v = str_value(inp.take(n, KEEP_STR)?, n);
                    m.push(v, off)?;
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => u64::from(u32::from_le_bytes(inp.le::<4>()?)),
                        b'C' => u64::from(inp.byte()?),
                        _ => u64::from_le_bytes(inp.le::<8>()?),
                    };
                    self.needs_proto(
                        op,
                        if op == 0x96 {
                            5
                        } else if op == 0x8e {
                            4
                        } else {
                            3
                        },
                        off,
                    );
                    inp.take(n, 0)?;
                    m.push(V::Bytes(n), off)?;
                }
                0x97 => {
                    self.needs_proto(op, 5, off);
                    m.push(V::Buffer, off)?;
                }
                0x98 => {
                    self.needs_proto(op, 5, off);
                    m.top(off)?;
                }
                b'a' => {
                    let v = m.pop(off)?;
                    if let V::List(l) = m.top(off)? {
                        push_capped(&mut l.borrow_mut(), shallow(v));
                    }
                }
                b'e' => {
                    let items = m.pop_mark(off)?;
                    if let V::List(l) = m.top(off)? {
                        let mut l = l.borrow_mut();
                        for v in items {
                            push_capped(&mut l, shallow(v));
                        }
                    }
                }
                0x90 => {
                    self.needs_proto(op, 4, off);
                    m.pop_mark(off)?;
                    m.top(off)?;
                }
                b'b' => {
                    let state = m.pop(off)?;
                    let inst = m.top(off)?.clone();
                    match &inst {
                        V::Global(g) => {
                            self.sink.add(
                                Severity::High,
                                self.loc,
                                Some(off),
                                format!(
                                    "BUILD sets attributes on {} itself (class or module state)",
                                    g.full()
                                ),
                            );
                        }
                        V::Obj(o) if is_joblib_wrapper(&o.callee) => {
                            joblib = true;
                            m.pop(off)?;
                            self.joblib_array(inp, &state, off, nest)?;
                            m.push(V::Obj(o.clone()), off)?;
                        }
                        _ => {}
                    }
                }
                b'c' => {
                    let module = inp.line()?;
                    let name = inp.line()?;
                    let v = self.import(&lossy(&module), &lossy(&name), off)?;
                    m.push(v, off)?;
                }
                0x93 => {
                    self.needs_proto(op, 4, off);
                    let name = m.pop(off)?;
                    let module = m.pop(off)?;
                    match (&module, &name) {
                        (V::Str(mo), V::Str(na)) => {
                            let v = self.import(mo, na, off)?;
                            m.push(v, off)?;
                        }
                        _ => {
                            self.sink.add(
                                Severity::Critical,
                                self.loc,
                                Some(off),
                                format!(
                                    "STACK_GLOBAL with non-string operands ({}, {}): the import cannot be determined",
                                    describe(&module, 0),
                                    describe(&name, 0)
                                ),
                            );
                            m.push(V::None, off)?;
                        }
                    }
                }
                0x82..=0x84 => {
                    self.needs_proto(op, 2, off);
                    let code = match op {
                        0x82 => u64::from(inp.byte()?),
                        0x83 => u64::from(u16::from_le_bytes(inp.le::<2>()?)),
                        _ => u64::from(u32::from_le_bytes(inp.le::<4>()?)),
                    };
                    self.imports += 1;
                    self.sink.add(
                        Severity::High,
                        self.loc,
                        Some(off),
                        format!("imports through copyreg extension code {code}, which the scanner cannot resolve"),
                    );
                    m.push(
                        V::Global(Rc::new(Global {
                            module: "<extension>".into(),
                            name: code.to_string(),
                            lookup: Lookup::Unknown(
                                Severity::High,
                                "unresolvable extension code".to_owned(),
                            ),
                        })),
                        off,
                    )?;
                }
                b'd' => {
                    let items = m.pop_mark(off)?;
                    let d = pairs(items);
                    m.push(V::Dict(Rc::new(RefCell::new(d))), off)?;
                }
                b'}' => m.push(V::Dict(Rc::default()), off)?,
                b']' => m.push(V::List(Rc::default()), off)?,
                b')' => m.push(tuple(Vec::new()), off)?,
                0x8f => {
                    self.needs_proto(op, 4, off);
                    m.push(V::Set, off)?;
                }
                0x91 => {
                    self.needs_proto(op, 4, off);
                    m.pop_mark(off)?;
                    m.push(V::Set, off)?;
                }
                b'g' | b'h' | b'j' => {
                    let idx = match op {
                        b'g' => {
                            let l = inp.line()?;
                            parse_int_line(&l)
                                .and_then(|i| u64::try_from(i).ok())
                                .ok_or(Stop::Malformed {
                                    offset: off,
                                    reason: "GET index is not a number".into(),
                                })?
                        }
                        b'h' => u64::from(inp.byte()?),
                        _ => u64::from(u32::from_le_bytes(inp.le::<4>()?)),
                    };
                    let v = match m.memo.get(&idx) {
                        Some(v) => v.clone(),
                        None => {
                            return malformed(
                                off,
                                format!("memo key {idx} read before it was written"),
                            )
                        }
                    };
                    m.push(v, off)?;
                }
                b'i' => {
                    let module = inp.line()?;
                    let name = inp.line()?;
                    let args = m.pop_mark(off)?;
                    let cls = self.import(&lossy(&module), &lossy(&name), off)?;
                    let v = self.call(cls, tuple(args), off, "INST");
                    m.push(v, off)?;
                }
                b'o' => {
                    let mut args = m.pop_mark(off)?;
                    if args.is_empty() {
                        return malformed(off, "OBJ without a class");
                    }
                    let cls = args.remove(0);
                    let v = self.call(cls, tuple(args), off, "OBJ");
                    m.push(v, off)?;
                }
                b'l' => {
                    let mut items = m.pop_mark(off)?;
                    items.truncate(KEEP_ITEMS);
                    let items = items.into_iter().map(shallow).collect();
                    m.push(V::List(Rc::new(RefCell::new(items))), off)?;
                }
                b'p' | b'q' | b'r' | 0x94 => {
                    let idx = match op {
                        b'p' => {
                            let l = inp.line()?;
                            parse_int_line(&l)
                                .and_then(|i| u64::try_from(i).ok())
                                .ok_or(Stop::Malformed {
                                    offset: off,
                                    reason: "PUT index is not a number".into(),
                                })?
                        }
                        b'q' => u64::from(inp.byte()?),
                        b'r' => u64::from(u32::from_le_bytes(inp.le::<4>()?)),
                        _ => {
                            self.needs_proto(op, 4, off);
                            m.memo.len() as u64
                        }
                    };
                    let v = m.top(off)?.clone();
                    if m.memo.len() >= MAX_MEMO && !m.memo.contains_key(&idx) {
                        return malformed(
                            off,
                            format!("memo grows beyond {MAX_MEMO} entries (memo bomb)"),
                        );
                    }
                    m.memo.insert(idx, v);
                }
                b's' => {
                    let v = m.pop(off)?;
                    let k = m.pop(off)?;
                    if let V::Dict(d) = m.top(off)? {
                        push_capped(&mut d.borrow_mut(), (shallow(k), shallow(v)));
                    }
                }
                b'u' => {
                    let items = m.pop_mark(off)?;
                    if let V::Dict(d) = m.top(off)? {
                        let mut d = d.borrow_mut();
                        for p in pairs(items) {
                            push_capped(&mut d, p);
                        }
                    }
                }
                b't' => {
                    let mut items = m.pop_mark(off)?;
                    items.truncate(KEEP_ITEMS);
                    m.push(tuple(items), off)?;
                }
                0x85..=0x87 => {
                    self.needs_proto(op, 2, off);
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(m.pop(off)?);
                    }
                    items.reverse();
                    m.push(tuple(items), off)?;
                }
                0x80 => {
                    let v = inp.byte()?;
                    if v > 5 {
                        return malformed(off, format!("unsupported pickle protocol {v}"));
                    }
                    self.proto = v;
                }
                0x81 => {
                    self.needs_proto(op, 2, off);
                    let args = m.pop(off)?;
                    let cls = m.pop(off)?;
                    let v = self.call(cls, args, off, "NEWOBJ");
                    m.push(v, off)?;
                }
                0x92 => {
                    self.needs_proto(op, 4, off);
                    let _kwargs = m.pop(off)?;
                    let args = m.pop(off)?;
                    let cls = m.pop(off)?;
                    let v = self.call(cls, args, off, "NEWOBJ_EX");
                    m.push(v, off)?;
                }
                0x95 => {
                    self.needs_proto(op, 4, off);
                    let n = u64::from_le_bytes(inp.le::<8>()?);
                    if n > MAX_ARG {
                        return malformed(off, format!("FRAME length {n} exceeds limit"));
                    }
                }
                other => return malformed(off, format!("unknown pickle opcode {other:#04x}")),
            }
        }
    }

    fn persistent(&mut self, off: u64) {
        if self.persistent_noted {
            return;
        }
        self.persistent_noted = true;
        let sev = match self.ctx {
            Context::Torch => Severity::Info,
            Context::Plain => Severity::Low,
        };
        self.sink.add(
            sev,
            self.loc,
            Some(off),
            "uses persistent ids (resolved by the loader, not imported)",
        );
    }

    /// joblib writes an array's raw bytes right after the BUILD of its `NumpyArrayWrapper`; its
    /// unpickler reads them from the file before going on. Size them from the wrapper's state,
    /// or, for object arrays, decode the nested pickle that follows.
    fn joblib_array<R: BufRead>(
        &mut self,
        inp: &mut Input<R>,
        state: &V,
        off: u64,
        nest: u32,
    ) -> Result<(), Stop> {
        let V::Dict(d) = state else {
            return malformed(off, "joblib array wrapper without a state dict");
        };
        let d = d.borrow();
        let get = |key: &str| {
            d.iter()
                .find(|(k, _)| matches!(k, V::Str(s) if &**s == key))
                .map(|(_, v)| v.clone())
        };
        let dtype = get("dtype").and_then(|v| dtype_str(&v));
        let Some(dtype) = dtype else {
            return malformed(off, "joblib array wrapper with an unreadable dtype");
        };
        if dtype.contains('O') {
            if nest >= MAX_NEST {
                return malformed(off, "pickles nested too deeply");
            }
            let o = self.run(inp, nest + 1)?;
            let _ = o;
            return Ok(());
        }
        let Some(item) = itemsize(&dtype) else {
            return malformed(
                off,
                format!("joblib array with unsupported dtype {dtype:?}"),
            );
        };
        let mut count: u64 = 1;
        match get("shape") {
            Some(V::Tuple(t, _)) => {
                for v in t.iter() {
                    let V::Int(n) = v else {
                        return malformed(off, "joblib array shape is not integers");
                    };
                    let n = u64::try_from(*n)
                        .or_else(|_| malformed(off, "negative joblib array dimension"))?;
                    count = count.checked_mul(n).ok_or(Stop::Malformed {
                        offset: off,
                        reason: "shape overflow".into(),
                    })?;
                }
            }
            _ => return malformed(off, "joblib array wrapper without a shape"),
        }
        if get("numpy_array_alignment_bytes").is_some() {
            let pad = inp.byte()?;
            inp.skip(u64::from(pad))?;
        }
        let bytes = count.checked_mul(item).ok_or(Stop::Malformed {
            offset: off,
            reason: "size overflow".into(),
        })?;
        inp.skip(bytes)
    }
}

fn is_joblib_wrapper(v: &V) -> bool {
    matches!(v, V::Global(g) if g.module == "joblib.numpy_pickle" && g.name == "NumpyArrayWrapper" && matches!(g.lookup, Lookup::Listed(..)))
}

/// The dtype string of a symbolic `numpy.dtype('f8', …)` call.
fn dtype_str(v: &V) -> Option<String> {
    let V::Obj(o) = v else { return None };
    let V::Tuple(t, _) = &o.args else { return None };
    match t.first() {
        Some(V::Str(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// Bytes per element of a simple numpy dtype string (`<f8`, `i4`, `U3`, `?`), or `None`.
pub(crate) fn itemsize(d: &str) -> Option<u64> {
    let d = d.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = d.chars();
    let kind = chars.next()?;
    let rest: String = chars.take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = if rest.is_empty() {
        0
    } else {
        rest.parse().ok()?
    };
    match kind {
        '?' => Some(1),
        'b' | 'B' if rest.is_empty() => Some(1),
        'b' | 'i' | 'u' | 'f' | 'c' | 'S' | 'a' | 'V' | 'M' | 'm' if n > 0 => Some(n),
        'U' if n > 0 => n.checked_mul(4),
        'h' | 'H' | 'e' => Some(2),
        'l' | 'L' | 'q' | 'Q' | 'd' | 'g' => Some(8),
        'f' if rest.is_empty() => Some(4),
        _ => None,
    }
}

/// The pickled int 0x1950a86a20f9469cfc6c that starts every legacy `torch.save` file.
const TORCH_MAGIC: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn long_value(b: Vec<u8>) -> V {
    if b.len() <= 8 && !b.is_empty() {
        let neg = b.last().is_some_and(|x| x & 0x80 != 0);
        let mut buf = if neg { [0xffu8; 8] } else { [0u8; 8] };
        for (i, x) in b.iter().enumerate() {
            if let Some(slot) = buf.get_mut(i) {
                *slot = *x;
            }
        }
        return V::Int(i64::from_le_bytes(buf));
    }
    V::BigInt(b)
}

fn str_value(bytes: Option<Vec<u8>>, n: u64) -> V {
    match bytes {
        Some(b) => V::Str(Rc::from(String::from_utf8_lossy(&b).as_ref())),
        None => V::LongStr(n),
    }
}

/// `a.b_c.D`: non-empty segments of letters, digits and `_`, not starting with a digit.
fn is_dotted_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|seg| {
            seg.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && seg.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_int_line(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.trim().parse().ok()
}

/// The content of a protocol-0 `STRING` argument: `'…'` or `"…"` with Python escapes, of which
/// only the ones that matter for names are decoded.
fn unquote(l: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(l).ok()?;
    let q = s.chars().next()?;
    if (q != '\'' && q != '"') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    Some(s.get(1..s.len() - 1)?.to_owned())
}

fn pairs(items: Vec<V>) -> Vec<(V, V)> {
    let mut out = Vec::new();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        push_capped(&mut out, (shallow(k), shallow(v)));
    }
    out
}

struct Machine {
    stack: Vec<V>,
    marks: Vec<Vec<V>>,
    memo: HashMap<u64, V>,
}

impl Machine {
    fn push(&mut self, v: V, off: u64) -> Result<(), Stop> {
        if self.stack.len() >= MAX_STACK {
            return malformed(off, "stack grows beyond limit (stack bomb)");
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self, off: u64) -> Result<V, Stop> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => malformed(off, "stack underflow"),
        }
    }

    fn top(&mut self, off: u64) -> Result<&V, Stop> {
        match self.stack.last() {
            Some(v) => Ok(v),
            None => malformed(off, "stack underflow"),
        }
    }

    fn pop_mark(&mut self, off: u64) -> Result<Vec<V>, Stop> {
        match self.marks.pop() {
            Some(prev) => Ok(std::mem::replace(&mut self.stack, prev)),
            None => malformed(
                off,
                "MARK expected but the metastack is empty (stack underflow)",
            ),
        }
    }
}

/// True for bytes that start a pickle opcode of some protocol.
pub(crate) fn opcode_known(b: u8) -> bool {
    b"(.012FIJKLMNPQRSTUVXabcdeghijlopqrstu}])G".contains(&b)
        || b"BC".contains(&b)
        || (0x80..=0x98).contains(&b)
}

/// Decodes a stream of one or more pickles in `ctx` and reports what it finds. A malformed
/// stream is a finding (fail closed). Returns the detected format.
pub(crate) fn scan_stream<R: Read>(
    inner: R,
    ctx: Context,
    loc: &str,
    sink: &mut Sink,
    trailing_ok: bool,
) -> Result<Format, Stop> {
    let mut inp = Input::new(BufReader::with_capacity(64 * 1024, inner), 0);
    let mut dec = Decoder::new(ctx, loc, sink);
    let mut format = Format::Pickle;
    let mut index = 0u32;
    let mut legacy = false;
    loop {
        let start = inp.pos();
        match dec.run(&mut inp, 0) {
            Ok(out) => {
                if out.joblib {
                    format = Format::Joblib;
                }
                if index == 0 && out.result_is_torch_magic && ctx == Context::Plain {
                    // The pre-zip torch.save layout: magic, protocol, sys_info, the object, the
                    // storage keys, then raw storage bytes. The object pickle is a checkpoint.
                    legacy = true;
                    format = Format::PytorchLegacy;
                    dec.ctx = Context::Torch;
                }
                let _ = out.end;
            }
            Err(Stop::Malformed { offset, reason }) => {
                dec.sink.add(
                    Severity::High,
                    loc,
                    Some(offset),
                    format!("malformed pickle: {reason}"),
                );
                break;
            }
            Err(e) => return Err(e),
        }
        index += 1;
        if legacy && index >= 5 {
            let here = inp.pos();
            dec.sink.add(
                Severity::Info,
                loc,
                Some(here),
                "raw storage bytes follow (not unpickled by torch)",
            );
            break;
        }
        match inp.peek()? {
            None => break,
            Some(0x80) => {
                if index >= 64 {
                    dec.sink.add(
                        Severity::High,
                        loc,
                        Some(inp.pos()),
                        "more than 64 pickles in one stream",
                    );
                    break;
                }
                if !legacy {
                    dec.sink.add(
                        Severity::Low,
                        loc,
                        Some(inp.pos()),
                        "another pickle follows in the same stream",
                    );
                }
            }
            Some(_) => {
                let here = inp.pos();
                if !trailing_ok {
                    dec.sink.add(
                        Severity::Medium,
                        loc,
                        Some(here),
                        format!("data after the pickle's STOP (stream began at {start:#x}); a lenient loader may read it"),
                    );
                }
                break;
            }
        }
    }
    dec.finish();
    Ok(format)
}

/// Scans a file that starts with the PROTO opcode.
pub(crate) fn scan_file<R: Read + Seek + ?Sized>(
    r: &mut R,
    _len: u64,
    loc: &str,
    _depth: u32,
    sink: &mut Sink,
) -> Result<Format, Stop> {
    r.seek(SeekFrom::Start(0))?;
    scan_stream(r, Context::Plain, loc, sink, false)
}

/// Tries to decode a protocol 0/1 pickle. True if it is one: it reached STOP, or it called
/// something before failing (a loader would have run that call), or, for input that is not
/// text, it imported something. Text that merely starts with `c` or `i` decodes as an import of
/// its first two lines and then fails; that is a model card or a vocabulary, not a pickle.
/// On true, `trial` holds the findings.
pub(crate) fn is_pickle_trial<R: Read + Seek + ?Sized>(
    r: &mut R,
    looks_text: bool,
    loc: &str,
    trial: &mut Sink,
) -> Result<bool, Stop> {
    let mut inp = Input::new(BufReader::new(&mut *r), 0);
    let mut scratch = trial.child();
    let mut dec = Decoder::new(Context::Plain, loc, &mut scratch);
    let res = dec.run(&mut inp, 0);
    let (imports, calls) = (dec.imports, dec.calls);
    drop(dec);
    match res {
        Ok(_) => {}
        Err(Stop::Malformed { .. }) if calls > 0 || (imports > 0 && !looks_text) => {}
        Err(Stop::Malformed { .. }) => return Ok(false),
        Err(e) => return Err(e),
    }
    drop(inp);
    r.seek(SeekFrom::Start(0))?;
    scan_stream(&mut *r, Context::Plain, loc, trial, false)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_bytes(b: &[u8], ctx: Context) -> Sink {
        let mut sink = Sink::default();
        scan_stream(b, ctx, "t.pkl", &mut sink, false).ok();
        sink
    }

    fn worst(s: &Sink) -> Option<Severity> {
        s.findings.iter().map(|f| f.severity).max()
    }

    #[test]
    fn global_reduce_is_reported_with_offset() {
        let s = scan_bytes(b"cos\nsystem\n(S'echo'\ntR.", Context::Plain);
        let f = s
            .findings
            .iter()
            .find(|f| f.message.starts_with("calls os.system"))
            .expect("call finding");
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.offset, Some(0x15));
    }

    #[test]
    fn stack_global_through_memo_and_dup() {
        // PROTO 4, 'os' DUP MEMOIZE POP POP, 'system' MEMOIZE POP, GET 0 GET 1 STACK_GLOBAL
        let b = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x30\x30h\x00h\x01\x93N\x85R.";
        let s = scan_bytes(b, Context::Plain);
        assert_eq!(worst(&s), Some(Severity::Critical), "{:?}", s.findings);
    }

    #[test]
    fn truncated_pickle_fails_closed() {
        let s = scan_bytes(b"\x80\x02}q\x00(X\x04\x00\x00\x00na", Context::Plain);
        assert!(s
            .findings
            .iter()
            .any(|f| f.message.contains("malformed") && f.severity >= Severity::High));
    }

    #[test]
    fn stack_underflow_fails_closed() {
        let s = scan_bytes(b"\x80\x02R.", Context::Plain);
        assert!(s.findings.iter().any(|f| f.message.contains("underflow")));
    }

    #[test]
    fn unknown_opcode_fails_closed() {
        let s = scan_bytes(b"\x80\x02\xff.", Context::Plain);
        assert!(s
            .findings
            .iter()
            .any(|f| f.message.contains("unknown pickle opcode")));
    }

    #[test]
    fn memo_bomb_fails_closed() {
        let mut b = b"\x80\x04N".to_vec();
        for i in 0..(MAX_MEMO as u32 + 1) {
            b.push(b'r');
            b.extend_from_slice(&i.to_le_bytes());
        }
        b.push(b'.');
        let s = scan_bytes(&b, Context::Plain);
        assert!(s.findings.iter().any(|f| f.message.contains("memo bomb")));
    }

    #[test]
    fn huge_declared_length_is_not_allocated() {
        let mut b = b"\x80\x04\x8e".to_vec();
        b.extend_from_slice(&(1u64 << 39).to_le_bytes());
        let s = scan_bytes(&b, Context::Plain);
        assert!(s.findings.iter().any(|f| f.message.contains("truncated")));
    }

    #[test]
    fn benign_containers_are_clean() {
        let b = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00b]q\x01(K\x01K\x02eu.";
        let s = scan_bytes(b, Context::Plain);
        assert!(
            worst(&s).is_none_or(|w| w < Severity::Medium),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn ext_opcode_is_refused() {
        let s = scan_bytes(b"\x80\x02\x82\x01)R.", Context::Plain);
        assert_eq!(worst(&s), Some(Severity::High));
    }

    #[test]
    fn every_pickle_in_a_stream_is_analysed() {
        let s = scan_bytes(b"\x80\x02K\x01.\x80\x02cos\nsystem\n)R.", Context::Plain);
        assert_eq!(worst(&s), Some(Severity::Critical));
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        // A million nested TUPLE1s, then a million nested REDUCE results.
        let mut b = b"\x80\x02N".to_vec();
        b.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        b.push(b'.');
        let s = scan_bytes(&b, Context::Plain);
        assert!(
            worst(&s).is_none_or(|w| w < Severity::Medium),
            "{:?}",
            s.findings
        );
        let mut b = b"\x80\x02c__builtin__\nset\n\x940)".to_vec();
        for _ in 0..200_000 {
            b.extend_from_slice(b"\x85h\x00\x87R");
        }
        b.push(b'.');
        scan_bytes(&b, Context::Plain);
    }

    #[test]
    fn itemsizes() {
        assert_eq!(itemsize("<f8"), Some(8));
        assert_eq!(itemsize("U3"), Some(12));
        assert_eq!(itemsize("|b1"), Some(1));
        assert_eq!(itemsize("O"), None);
    }
}
