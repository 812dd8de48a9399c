//! Which pickle globals are acceptable, and for what. Allowlist first: a global is fine only if
//! it is listed for the stream's context, and then only for the uses its kind permits.
//!
//! The line drawn is between *reconstructing data* and *calling a function*:
//! - a [`Kind::Reconstructor`] is a function whose only job is rebuilding a value of its library
//!   from the pickled arguments (`numpy._core.multiarray._reconstruct`, pandas' `_new_Index`);
//! - a [`Kind::Value`] is a class whose construction from arguments only stores them (`set`,
//!   `OrderedDict`, `numpy.dtype`, an `Enum` looked up by value), so `REDUCE` on it is data;
//! - a [`Kind::State`] is a class restored by `__new__` plus `BUILD` (`__setstate__` or an
//!   attribute update) and nothing else. Only `NEWOBJ` or `copyreg._reconstructor` may create it:
//!   `REDUCE` would run its `__init__`, which the library never writes into a pickle and which
//!   may do real work (`TrainingArguments.__post_init__` sets up devices);
//! - a [`Kind::Constant`] is referenced, never called (torch dtypes, `Ellipsis`).
//!
//! A class is listed only when its `__new__`, `__init__` (for `Value`) and `__setstate__` are
//! known to restore state and nothing else, so a `BUILD` never makes an unknown class acceptable:
//! what is not listed is refused, whatever opcodes surround it. Python 2 names (`__builtin__`,
//! `copy_reg`, `numpy.core`) are mapped to the objects a Python 3 unpickler loads before anything
//! is decided. Each entry says where it comes from: the library, the version and the object whose
//! pickle writes it (the generated corpus in `integration-tests/corpus/` holds those pickles).

use std::collections::BTreeSet;

use super::Severity;

/// Who will unpickle the stream, which decides what it may legitimately import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// `torch.load`: tensor and storage rebuilders, dtypes, plain containers, numpy values and
    /// the training-metadata classes checkpoints carry.
    Torch,
    /// `pickle.load`, `joblib.load`, `np.load(allow_pickle=True)`: plain containers, numpy and
    /// pandas values, and estimator classes of scikit-learn/scipy.
    Plain,
}

/// What a listed global is; decides which uses are acceptable (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Reconstructor,
    Value,
    State,
    Constant,
}

/// How a pickle uses a global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// `GLOBAL`/`STACK_GLOBAL`: imported (its module is imported; nothing of it runs).
    Import,
    /// `REDUCE`, `INST`, `OBJ`: called with the pickled arguments.
    Call,
    /// `NEWOBJ`, `NEWOBJ_EX`, or the class given to `copyreg._reconstructor`: `cls.__new__(cls)`,
    /// then `BUILD` restores its state.
    New,
}

/// What the allowlist says about one global, before any use.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// Listed, with its kind and where the entry comes from.
    Listed(Kind, &'static str),
    /// Admitted by the operator's `[scan] allow_globals` (any use; audited).
    Configured,
    /// Not listed: refused at this severity, for this reason.
    Unknown(Severity, String),
}

/// The decision on one use of a global.
pub(crate) enum Decision {
    Allowed(String),
    Refused(Severity, String),
}

/// A global as a Python 3 unpickler resolves it: `_compat_pickle` maps Python 2 names when a
/// protocol 0–2 stream is loaded (`fix_imports`), and moved numpy modules still resolve through
/// numpy's import shims.
pub(crate) fn canonical(module: &str, name: &str) -> (String, String) {
    // Lib/_compat_pickle.py NAME_MAPPING (the entries that name data types).
    let renamed = match (module, name) {
        ("__builtin__", "xrange") => Some(("builtins", "range")),
        ("__builtin__", "unicode") => Some(("builtins", "str")),
        ("__builtin__", "basestring") => Some(("builtins", "str")),
        ("__builtin__", "long") => Some(("builtins", "int")),
        ("__builtin__", "reduce") => Some(("functools", "reduce")),
        ("__builtin__", "intern") => Some(("sys", "intern")),
        ("itertools", "izip") => Some(("builtins", "zip")),
        ("itertools", "imap") => Some(("builtins", "map")),
        ("UserDict", "UserDict") => Some(("collections", "UserDict")),
        ("UserList", "UserList") => Some(("collections", "UserList")),
        ("UserString", "UserString") => Some(("collections", "UserString")),
        _ => None,
    };
    if let Some((m, n)) = renamed {
        return (m.to_owned(), n.to_owned());
    }
    // Lib/_compat_pickle.py IMPORT_MAPPING (modules), plus the os aliases.
    let m = match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "Queue" => "queue",
        "repr" => "reprlib",
        "cStringIO" | "StringIO" => "io",
        "posix" | "nt" => "os",
        other => other,
    };
    // numpy 2 moved numpy.core to numpy._core and keeps numpy.core as an alias for unpickling.
    if let Some(rest) = m.strip_prefix("numpy.core") {
        if rest.is_empty() || rest.starts_with('.') {
            return (format!("numpy._core{rest}"), name.to_owned());
        }
    }
    (m.to_owned(), name.to_owned())
}

/// Builtin types a pickle writes for plain values; constructing any of them runs no user code.
/// Source: CPython 3.11 `pickle` (set/frozenset/bytearray/complex/slice/range REDUCE; object as
/// the base of `copyreg._reconstructor`), and `_compat_pickle` for the Python 2 spellings.
const BUILTIN_VALUES: &[&str] = &[
    "set",
    "frozenset",
    "bytearray",
    "bytes",
    "complex",
    "slice",
    "range",
    "int",
    "float",
    "str",
    "bool",
    "list",
    "dict",
    "tuple",
    "object",
];

/// The operator's admitted globals (`[scan] allow_globals`), already validated.
pub(crate) type Configured = BTreeSet<String>;

/// Looks `module.name` up for `ctx`. `configured` are the operator's own admitted classes.
pub(crate) fn lookup(ctx: Context, module: &str, name: &str, configured: &Configured) -> Lookup {
    let (m, n) = canonical(module, name);
    let dotted = n.contains('.');
    if !dotted {
        let listed = common(&m, &n).or_else(|| match ctx {
            Context::Torch => torch(&m, &n),
            Context::Plain => estimators(&m, &n),
        });
        if let Some((kind, source)) = listed {
            return Lookup::Listed(kind, source);
        }
    }
    if configured.contains(&format!("{module}.{name}")) || configured.contains(&format!("{m}.{n}"))
    {
        return Lookup::Configured;
    }
    let sev = grade(&m, &n);
    let why = if dotted {
        format!("attribute path through {module}, resolved by getattr at load time")
    } else if sev == Severity::Critical {
        "can execute code".to_owned()
    } else {
        let ctx_name = match ctx {
            Context::Torch => "a PyTorch checkpoint",
            Context::Plain => "a data pickle",
        };
        format!("not on the allowlist for {ctx_name}")
    };
    // A dotted name always reaches an attribute the allowlist never saw: at least high.
    let sev = if dotted { sev.max(Severity::High) } else { sev };
    Lookup::Unknown(sev, why)
}

/// Judges one use of a looked-up global.
pub(crate) fn judge(lookup: &Lookup, how: Use) -> Decision {
    match lookup {
        Lookup::Unknown(sev, why) => Decision::Refused(*sev, why.clone()),
        Lookup::Configured => Decision::Allowed("admitted by [scan] allow_globals".to_owned()),
        Lookup::Listed(kind, source) => {
            let ok = match how {
                Use::Import => true,
                Use::Call => matches!(kind, Kind::Reconstructor | Kind::Value),
                Use::New => matches!(kind, Kind::Value | Kind::State),
            };
            if ok {
                return Decision::Allowed((*source).to_owned());
            }
            let why = match kind {
                Kind::State => {
                    "a class admitted only for reconstruction (NEWOBJ then BUILD); calling it runs its __init__"
                }
                Kind::Reconstructor => "a reconstruction function, not a class to instantiate",
                Kind::Constant => "a constant, not something to call",
                Kind::Value => "not a class to instantiate this way",
            };
            Decision::Refused(Severity::High, why.to_owned())
        }
    }
}

/// Checks an operator's `module.Class` entry: it must be an importable dotted name with a module
/// part, and not something the scanner grades as code execution (no allowlist can admit
/// `os.system`).
pub(crate) fn check_configured(entry: &str) -> Result<(), &'static str> {
    let Some((module, name)) = entry.rsplit_once('.') else {
        return Err("expected module.Name");
    };
    let ident = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|seg| {
                seg.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    if !ident(module) || !ident(name) {
        return Err("not a Python module.Name");
    }
    let (m, n) = canonical(module, name);
    if grade(&m, &n) == Severity::Critical {
        return Err("it can execute code, so no configuration may admit it");
    }
    Ok(())
}

type Entry = Option<(Kind, &'static str)>;

/// Allowed in every context: containers and value types of the standard library, numpy and
/// pandas values, and the training-metadata classes of transformers.
fn common(m: &str, n: &str) -> Entry {
    use Kind::*;
    let hit = match (m, n) {
        ("builtins", n) if BUILTIN_VALUES.contains(&n) => {
            (Value, "CPython 3.11 pickle: builtin value types")
        }
        ("builtins", "Ellipsis" | "NotImplemented") => {
            (Constant, "CPython 3.11 pickle: Ellipsis and NotImplemented by reference")
        }
        ("copyreg", "_reconstructor") => (
            Reconstructor,
            "CPython copyreg._reduce_ex: objects at protocols 0-1 (its class argument is judged as NEWOBJ)",
        ),
        ("_codecs", "encode") => (Reconstructor, "CPython 3 pickle: bytes at protocols 0-2"),
        ("collections", "OrderedDict" | "defaultdict" | "Counter" | "deque") => {
            (Value, "CPython 3.11 collections: containers (REDUCE with their items)")
        }
        ("datetime", "datetime" | "date" | "time" | "timedelta" | "timezone") => {
            (Value, "CPython 3.11 datetime: REDUCE with the packed value")
        }
        ("decimal", "Decimal") => (Value, "CPython 3.11 decimal.Decimal: REDUCE with its string"),
        ("fractions", "Fraction") => (Value, "CPython 3.11 fractions.Fraction: REDUCE with its string"),
        ("uuid", "UUID") => (State, "CPython 3.11 uuid.UUID: NEWOBJ then BUILD {'int': …}"),
        ("uuid", "SafeUUID") => (Value, "CPython 3.11 uuid.SafeUUID: Enum looked up by value"),
        (
            "pathlib",
            "Path" | "PosixPath" | "WindowsPath" | "PurePath" | "PurePosixPath" | "PureWindowsPath",
        ) => (Value, "CPython 3.11 pathlib: REDUCE with the path parts"),
        ("argparse", "Namespace") => (
            Value,
            "CPython 3.11 argparse.Namespace (timm/torchvision checkpoint args): __init__ only sets attributes",
        ),
        ("types", "SimpleNamespace") => (Value, "CPython 3.11 types.SimpleNamespace"),
        ("re", "_compile") => (Reconstructor, "CPython 3.11 re.Pattern.__reduce__"),
        ("array", "array") => (Value, "CPython 3.11 array.array at protocols 0-2"),
        ("array", "_array_reconstructor") => {
            (Reconstructor, "CPython 3.11 array.array.__reduce_ex__ at protocol 3+")
        }
        // numpy 1.26 (numpy.core) and 2.4 (numpy._core), mapped to numpy._core by `canonical`.
        ("numpy._core.multiarray", "_reconstruct") => {
            (Reconstructor, "numpy ndarray.__reduce__ (numpy 1.x numpy.core, 2.x numpy._core)")
        }
        ("numpy._core.multiarray", "scalar") => {
            (Reconstructor, "numpy generic.__reduce__: numpy scalars (1.x and 2.x)")
        }
        ("numpy._core.numeric", "_frombuffer") => (
            Reconstructor,
            "numpy ndarray.__reduce_ex__(5): contiguous arrays at protocol 5 (numpy 1.16+, 2.x)",
        ),
        ("numpy", "ndarray") => (State, "numpy ndarray: the class given to _reconstruct"),
        ("numpy", "dtype") => (Value, "numpy dtype.__reduce__: REDUCE dtype(str, align, copy) then BUILD"),
        ("numpy", n) if NUMPY_TYPES.contains(&n) => (Value, "numpy scalar and array types"),
        ("numpy.dtypes", n) if is_class_name(n) && n.ends_with("DType") => {
            (Value, "numpy 2.x numpy.dtypes classes")
        }
        ("numpy._core.defchararray", "chararray") | ("numpy.matrixlib.defmatrix", "matrix") => {
            (State, "numpy ndarray subclasses, given to _reconstruct")
        }
        ("numpy.ma.core", "_mareconstruct") => (Reconstructor, "numpy MaskedArray.__reduce__"),
        ("numpy.ma.core" | "numpy.ma", "MaskedArray") => {
            (State, "numpy MaskedArray.__reduce__ (numpy.ma in 2.x, numpy.ma.core in 1.x)")
        }
        (
            "numpy.random._pickle",
            "__randomstate_ctor" | "__bit_generator_ctor" | "__generator_ctor",
        ) => (
            Reconstructor,
            "numpy RandomState/Generator/BitGenerator.__reduce__ (1.26, 2.4)",
        ),
        ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence") => (
            Reconstructor,
            "numpy 2.4 SeedSequence.__reduce__ (Cython-generated: __new__ then state)",
        ),
        ("numpy.random.bit_generator", "SeedSequence") => {
            (State, "numpy 2.4 SeedSequence, given to its Cython unpickler")
        }
        ("numpy.random.mtrand", "RandomState")
        | ("numpy.random._mt19937", "MT19937")
        | ("numpy.random._pcg64", "PCG64" | "PCG64DXSM")
        | ("numpy.random._philox", "Philox")
        | ("numpy.random._sfc64", "SFC64")
        | ("numpy.random._generator", "Generator") => {
            (State, "numpy random generators, passed to numpy.random._pickle")
        }
        // transformers 5.25 TrainingArguments (training_args.bin) and the enums of its fields;
        // the enum names are the same in transformers 4.x.
        ("transformers.training_args" | "transformers.training_args_seq2seq", n)
            if n.ends_with("TrainingArguments") =>
        {
            (
                State,
                "transformers 5.25 TrainingArguments (a dataclass: NEWOBJ then BUILD; its __post_init__ must not run)",
            )
        }
        ("transformers.training_args", "OptimizerNames")
        | (
            "transformers.trainer_utils",
            "IntervalStrategy" | "SaveStrategy" | "HubStrategy" | "SchedulerType"
            | "EvaluationStrategy" | "FSDPOption" | "ShardedDDPOption",
        )
        | ("transformers.debug_utils", "DebugOption") => (
            Value,
            "transformers 5.25 TrainingArguments field enums (ExplicitEnum: REDUCE looks the member up by value)",
        ),
        _ => return pandas(m, n),
    };
    Some(hit)
}

/// pandas 2.2 and 3.1 values. Classes are admitted in pandas' data-model modules only (frames,
/// series, indexes, arrays, dtypes, block managers, the tslibs scalars and offsets): their
/// constructors build values, and pandas pickles several by REDUCE. `pandas.io`, `pandas.plotting`
/// and the like are left out (`HDFStore`, `ExcelFile` open files), as is the top-level `pandas`
/// namespace except the value classes it re-exports. Functions are listed one by one.
fn pandas(m: &str, n: &str) -> Entry {
    use Kind::*;
    if !(m == "pandas" || m.starts_with("pandas.")) {
        return None;
    }
    let hit = match (m, n) {
        ("pandas.core.indexes.base", "_new_Index")
        | ("pandas.core.indexes.interval", "_new_IntervalIndex")
        | ("pandas.core.indexes.datetimes", "_new_DatetimeIndex")
        | ("pandas.core.indexes.period", "_new_PeriodIndex")
        | ("pandas.core.indexes.timedeltas", "_new_TimedeltaIndex")
        | ("pandas._libs.internals", "_unpickle_block")
        | ("pandas.core.internals.blocks", "new_block")
        | ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp")
        | ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle")
        | ("pandas._libs.tslibs.nattype", "__nat_unpickle")
        | ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked") => (
            Reconstructor,
            "pandas 2.2/3.1 __reduce__ of Index, Block, Timestamp, Timedelta, NaT and NDArrayBacked arrays",
        ),
        (
            "pandas",
            "DataFrame" | "Series" | "Index" | "RangeIndex" | "MultiIndex" | "DatetimeIndex"
            | "PeriodIndex" | "IntervalIndex" | "TimedeltaIndex" | "CategoricalIndex"
            | "Categorical" | "CategoricalDtype" | "StringDtype" | "BooleanDtype"
            | "DatetimeTZDtype" | "PeriodDtype" | "IntervalDtype" | "SparseDtype" | "ArrowDtype"
            | "Int8Dtype" | "Int16Dtype" | "Int32Dtype" | "Int64Dtype" | "UInt8Dtype"
            | "UInt16Dtype" | "UInt32Dtype" | "UInt64Dtype" | "Float32Dtype" | "Float64Dtype"
            | "Timestamp" | "Timedelta" | "Period" | "Interval",
        ) => (
            Value,
            "pandas 3.1 DataFrame/Series/Index/array/dtype pickles (named through the top-level namespace)",
        ),
        (m, n) if is_private_class_name(n) && pandas_data_module(m) => (
            Value,
            "pandas 2.2/3.1 data-model classes (frame, series, indexes, arrays, dtypes, internals, tslibs)",
        ),
        _ => return None,
    };
    Some(hit)
}

fn pandas_data_module(m: &str) -> bool {
    const EXACT: &[&str] = &[
        "pandas.arrays",
        "pandas.core.frame",
        "pandas.core.series",
        "pandas.core.dtypes.dtypes",
        "pandas._libs.sparse",
        "pandas._libs.interval",
        "pandas._libs.arrays",
        "pandas._libs.internals",
        "pandas._libs.missing",
    ];
    const TREES: &[&str] = &[
        "pandas.core.indexes.",
        "pandas.core.arrays.",
        "pandas.core.internals.",
        "pandas._libs.tslibs.",
    ];
    EXACT.contains(&m) || TREES.iter().any(|t| m.starts_with(t))
}

/// numpy's array, dtype and scalar classes (constructing them runs no user code).
const NUMPY_TYPES: &[&str] = &[
    "ndarray",
    "dtype",
    "bool_",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "longdouble",
    "complex64",
    "complex128",
    "str_",
    "bytes_",
    "void",
    "datetime64",
    "timedelta64",
    "object_",
    "intc",
    "uintc",
    "longlong",
    "ulonglong",
    "half",
    "single",
    "double",
    "csingle",
    "cdouble",
    "matrix",
];

const TORCH_DTYPES: &[&str] = &[
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "complex64",
    "complex128",
    "cfloat",
    "cdouble",
    "uint8",
    "int8",
    "int16",
    "short",
    "int32",
    "int",
    "int64",
    "long",
    "bool",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "uint16",
    "uint32",
    "uint64",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "strided",
    "sparse_coo",
    "sparse_csr",
    "contiguous_format",
    "channels_last",
    "preserve_format",
    "per_tensor_affine",
    "per_channel_affine",
    "Size",
    "device",
    "Tensor",
    "dtype",
    "layout",
    "memory_format",
];

/// Allowed only in PyTorch checkpoints (torch 2.x `torch.save`, `torch/_utils.py`,
/// `torch/_tensor.py`; Lightning 1.9/2.6 checkpoints).
fn torch(m: &str, n: &str) -> Entry {
    use Kind::*;
    let hit = match (m, n) {
        ("torch._utils", n)
            if n.starts_with("_rebuild_")
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && n != "_rebuild_from_type" =>
        {
            (
                Reconstructor,
                "torch Tensor/Parameter/QTensor.__reduce_ex__ rebuilders",
            )
        }
        ("torch._tensor", "_rebuild_from_type_v2") => {
            (Reconstructor, "torch Tensor subclasses with Python state")
        }
        ("torch", n) if n.ends_with("Storage") && is_class_name(n) => {
            (Value, "torch.save persistent ids name the storage class")
        }
        ("torch", "Size" | "device") => (Value, "torch.Size/torch.device.__reduce__"),
        ("torch", "Tensor") => (State, "torch.Tensor, given to _rebuild_from_type_v2"),
        ("torch", n) if TORCH_DTYPES.contains(&n) => (
            Constant,
            "torch dtypes, layouts and memory formats pickle by name",
        ),
        ("torch.storage", "UntypedStorage" | "TypedStorage") => {
            (Value, "torch.save persistent ids of untyped storages")
        }
        ("torch.nn.parameter", "Parameter" | "UninitializedParameter") => {
            (State, "torch nn.Parameter, given to the rebuilders")
        }
        ("torch.serialization", "_get_layout") => (Reconstructor, "torch sparse tensor layouts"),
        ("torch.torch_version", "TorchVersion") => (Value, "torch.__version__ (a str subclass)"),
        // Lightning keeps hyper-parameters in a dict subclass (NEWOBJ then SETITEMS):
        // lightning 2.x lightning.fabric.utilities.data / lightning_fabric, 1.x pytorch_lightning.
        (
            "pytorch_lightning.utilities.parsing"
            | "lightning_fabric.utilities.data"
            | "lightning.fabric.utilities.data",
            "AttributeDict",
        ) => (
            Value,
            "Lightning checkpoint hyper_parameters (AttributeDict, a dict subclass)",
        ),
        // Whole-module saves: torch's own layer classes only restore their attribute dicts.
        (m, n) if m.starts_with("torch.nn.modules.") && is_class_name(n) => (
            State,
            "torch.nn layer classes in whole-module saves (NEWOBJ then BUILD)",
        ),
        // TorchScript archives name their compiled classes under `__torch__`, resolved by the
        // TorchScript compilation unit, never imported as Python.
        (m, _) if m == "__torch__" || m.starts_with("__torch__.") => (
            Value,
            "TorchScript classes, resolved by the TorchScript loader",
        ),
        (
            "torch.jit._pickle",
            "build_intlist" | "build_tensorlist" | "build_doublelist" | "build_boollist"
            | "restore_type_tag",
        ) => (Reconstructor, "TorchScript constants.pkl list builders"),
        _ => return None,
    };
    Some(hit)
}

/// Classes of estimator libraries (`pickle.dump`/`joblib.dump` of scikit-learn 1.9 and scipy
/// 1.17 objects). Only class names, outside testing modules and vendored code: a scikit-learn
/// estimator is restored by NEWOBJ and `BaseEstimator.__setstate__` (an attribute update); the
/// Cython types that pickle themselves by REDUCE are listed by name.
fn estimators(m: &str, n: &str) -> Entry {
    use Kind::*;
    let lib = m.split('.').next().unwrap_or("");
    if !matches!(lib, "sklearn" | "scipy" | "joblib") {
        return None;
    }
    if m.split('.').any(|p| p.contains("test") || p == "externals") {
        return None;
    }
    let hit = match (lib, m, n) {
        ("joblib", "joblib.numpy_pickle", "NumpyArrayWrapper" | "NDArrayWrapper") => {
            (State, "joblib 1.6 numpy_pickle array wrappers (NEWOBJ then BUILD)")
        }
        ("joblib", ..) => return None,
        ("sklearn", "sklearn.neighbors._kd_tree" | "sklearn.neighbors._ball_tree"
            | "sklearn.metrics._dist_metrics", "newObj") => (
            Reconstructor,
            "scikit-learn 1.9 KDTree/BallTree/DistanceMetric.__reduce__ (Cython newObj: cls.__new__(cls))",
        ),
        ("sklearn", m, n) if is_private_class_name(n) && sklearn_cython_value(m, n) => (
            Value,
            "scikit-learn 1.9 Cython types pickled by REDUCE with their sizes (trees, losses, metrics)",
        ),
        ("sklearn", _, n) if is_private_class_name(n) => {
            (State, "scikit-learn 1.9 estimators (NEWOBJ then BaseEstimator.__setstate__)")
        }
        ("scipy", m, n) if m.starts_with("scipy.sparse") => {
            // scipy's sparse containers are lower-case classes.
            let sparse = ["csr", "csc", "coo", "bsr", "dia", "dok", "lil"]
                .iter()
                .any(|k| n == format!("{k}_matrix") || n == format!("{k}_array"));
            if sparse || is_class_name(n) {
                (State, "scipy 1.17 sparse matrices and arrays (NEWOBJ then BUILD)")
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(hit)
}

/// scikit-learn's Cython extension types whose `__reduce__` is `(cls, args, state)`.
fn sklearn_cython_value(m: &str, n: &str) -> bool {
    matches!(
        (m, n),
        ("sklearn.tree._tree", "Tree")
            | ("sklearn._loss._loss", _)
            | ("sklearn.linear_model._sgd_fast", _)
            | ("sklearn.neighbors._kd_tree", "KDTree")
            | ("sklearn.neighbors._ball_tree", "BallTree")
            | ("sklearn.metrics._dist_metrics", _)
    )
}

/// Reconstructors whose first argument is a class they instantiate with `__new__`: that class is
/// judged as a NEWOBJ target, so an unlisted class cannot hide behind an allowed function.
pub(crate) fn instantiates_first_argument(module: &str, name: &str) -> bool {
    let (m, n) = canonical(module, name);
    matches!(
        (m.as_str(), n.as_str()),
        ("copyreg", "_reconstructor")
            | ("numpy._core.multiarray", "_reconstruct")
            | ("numpy.ma.core", "_mareconstruct")
            | ("pandas.core.indexes.base", "_new_Index")
            | ("torch._tensor", "_rebuild_from_type_v2")
    ) || n == "newObj"
        || n.starts_with("__pyx_unpickle_")
}

/// `copyreg._reconstructor(cls, base, state)` calls `base.__init__(obj, state)` unless `base` is
/// `object`: the base is judged as a call.
pub(crate) fn runs_second_argument(module: &str, name: &str) -> bool {
    canonical(module, name) == ("copyreg".to_owned(), "_reconstructor".to_owned())
}

/// `CamelCase` identifier with no dots: a class, by Python naming convention.
fn is_class_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A class name, possibly private (`_BinMapper`), but not a dunder.
fn is_private_class_name(name: &str) -> bool {
    !name.starts_with("__") && is_class_name(name.trim_start_matches('_'))
}

/// Modules whose import from a pickle is code execution or a known gadget, whatever the name.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "subprocess",
    "sys",
    "runpy",
    "pty",
    "code",
    "codeop",
    "pydoc",
    "importlib",
    "pkgutil",
    "operator",
    "_operator",
    "functools",
    "marshal",
    "types",
    "pickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "shutil",
    "socket",
    "asyncio",
    "ctypes",
    "multiprocessing",
    "webbrowser",
    "commands",
    "platform",
    "imaplib",
    "ftplib",
    "nntplib",
    "smtplib",
    "telnetlib",
    "poplib",
    "timeit",
    "cProfile",
    "profile",
    "pdb",
    "bdb",
    "trace",
    "pip",
    "setuptools",
    "distutils",
    "_posixsubprocess",
    "signal",
    "threading",
    "_thread",
    "tempfile",
    "glob",
    "io",
    "_io",
    "zipimport",
    "linecache",
    "inspect",
    "site",
    "sysconfig",
    "ensurepip",
    "venv",
    "doctest",
    "unittest",
    "tkinter",
    "http",
    "urllib",
    "xmlrpc",
    "requests",
    "builtins",
    "numpy.testing",
    "torch.utils.collect_env",
    "torch.jit",
    "torch.hub",
    "torch.package",
    "torch.serialization",
    "torch._dynamo",
    "torch.fx",
    "keras",
    "tensorflow",
    "uuid",
    "logging",
    "gc",
    "weakref",
    "copy",
    "_sqlite3",
    "sqlite3",
    "shelve",
    "dbm",
    "joblib",
    "numpy.lib",
    "numpy.f2py",
    "numpy.distutils",
    "sklearn.utils._testing",
    "IPython",
    "jinja2",
    "mako",
    "yaml",
];

/// Names that are dangerous in any module (loaders, evaluators, process spawners).
const DANGEROUS_NAMES: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "compile",
    "getattr",
    "setattr",
    "delattr",
    "__import__",
    "open",
    "input",
    "breakpoint",
    "globals",
    "locals",
    "vars",
    "system",
    "popen",
    "Popen",
    "spawn",
    "load",
    "loads",
    "run",
    "run_path",
    "run_module",
    "_run_code",
    "call",
    "check_call",
    "check_output",
    "execv",
    "execve",
    "execvp",
    "fork",
    "kill",
    "remove",
    "unlink",
    "rmtree",
    "import_module",
    "resolve_name",
    "locate",
    "attrgetter",
    "methodcaller",
    "itemgetter",
    "partial",
    "reduce",
    "FunctionType",
    "CodeType",
    "MethodType",
    "runcode",
    "runsource",
    "interact",
    "pipepager",
    "tempfilepager",
    "execWrapper",
    "runstring",
    "timeit",
    "repeat",
    "_get_command_stdout",
    "create_subprocess_shell",
    "create_subprocess_exec",
    "main",
    "urlopen",
    "apply",
    "read_pickle",
];

/// How bad a refused import is.
fn grade(canon_module: &str, name: &str) -> Severity {
    let module_hit = DANGEROUS_MODULES.iter().any(|d| {
        canon_module == *d
            || canon_module
                .strip_prefix(d)
                .is_some_and(|rest| rest.starts_with('.'))
    });
    let name_hit = name
        .split('.')
        .any(|part| DANGEROUS_NAMES.contains(&part) || DANGEROUS_MODULES.contains(&part));
    let dunder = name
        .split('.')
        .any(|p| p.starts_with("__") && p.ends_with("__"));
    if module_hit || name_hit || dunder {
        Severity::Critical
    } else {
        Severity::High
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sev(ctx: Context, m: &str, n: &str, how: Use) -> Option<Severity> {
        match judge(&lookup(ctx, m, n, &Configured::new()), how) {
            Decision::Allowed(_) => None,
            Decision::Refused(s, _) => Some(s),
        }
    }

    #[test]
    fn torch_rebuilders_allowed_only_in_torch_context() {
        assert_eq!(
            sev(
                Context::Torch,
                "torch._utils",
                "_rebuild_tensor_v2",
                Use::Call
            ),
            None
        );
        assert_eq!(
            sev(Context::Torch, "torch", "FloatStorage", Use::Import),
            None
        );
        assert_eq!(
            sev(Context::Torch, "collections", "OrderedDict", Use::Call),
            None
        );
        assert!(sev(
            Context::Plain,
            "torch._utils",
            "_rebuild_tensor_v2",
            Use::Call
        )
        .is_some());
        assert!(sev(
            Context::Torch,
            "sklearn.linear_model",
            "LogisticRegression",
            Use::New
        )
        .is_some());
    }

    #[test]
    fn dangerous_imports_are_critical() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("__builtin__", "eval"),
            ("builtins", "getattr"),
            ("subprocess", "Popen"),
            ("runpy", "_run_code"),
            ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
            ("torch", "os.system"),
            ("logging", "os.system"),
            ("uuid", "_get_command_stdout"),
            ("__builtin__", "reduce"),
        ] {
            for ctx in [Context::Torch, Context::Plain] {
                assert_eq!(
                    sev(ctx, m, n, Use::Call),
                    Some(Severity::Critical),
                    "{m}.{n}"
                );
            }
        }
    }

    #[test]
    fn python2_names_resolve_to_their_python3_objects() {
        assert_eq!(
            sev(Context::Plain, "__builtin__", "xrange", Use::Call),
            None
        );
        assert_eq!(
            sev(Context::Plain, "copy_reg", "_reconstructor", Use::Call),
            None
        );
        assert_eq!(
            sev(
                Context::Plain,
                "numpy.core.multiarray",
                "_reconstruct",
                Use::Call
            ),
            None
        );
        assert_eq!(
            sev(
                Context::Plain,
                "numpy.core.numeric",
                "_frombuffer",
                Use::Call
            ),
            None
        );
    }

    #[test]
    fn state_classes_are_rebuilt_not_called() {
        let m = "transformers.training_args";
        assert_eq!(sev(Context::Torch, m, "TrainingArguments", Use::New), None);
        assert_eq!(
            sev(Context::Torch, m, "TrainingArguments", Use::Call),
            Some(Severity::High)
        );
        assert_eq!(
            sev(Context::Plain, "sklearn.linear_model", "Ridge", Use::Call),
            Some(Severity::High)
        );
        assert_eq!(
            sev(
                Context::Plain,
                "numpy._core.numeric",
                "_frombuffer",
                Use::New
            ),
            Some(Severity::High)
        );
    }

    #[test]
    fn unknown_import_is_high() {
        assert_eq!(
            sev(Context::Plain, "mypackage.models", "Thing", Use::New),
            Some(Severity::High)
        );
        assert_eq!(
            sev(Context::Plain, "sklearn.utils._testing", "Thing", Use::New),
            Some(Severity::Critical)
        );
        assert_eq!(
            sev(Context::Plain, "pandas.io.pytables", "HDFStore", Use::Call),
            Some(Severity::High)
        );
        assert_eq!(
            sev(Context::Plain, "pandas", "HDFStore", Use::Call),
            Some(Severity::High)
        );
        assert_eq!(
            sev(Context::Plain, "pandas", "read_pickle", Use::Call),
            Some(Severity::Critical)
        );
    }

    #[test]
    fn configured_globals_are_admitted_but_never_dangerous_ones() {
        let mut c = Configured::new();
        c.insert("mypkg.models.Config".to_owned());
        assert!(matches!(
            judge(
                &lookup(Context::Plain, "mypkg.models", "Config", &c),
                Use::New
            ),
            Decision::Allowed(_)
        ));
        assert!(check_configured("mypkg.models.Config").is_ok());
        assert!(check_configured("os.system").is_err());
        assert!(check_configured("builtins.eval").is_err());
        assert!(check_configured("nodot").is_err());
        assert!(check_configured("a.b c").is_err());
    }
}
