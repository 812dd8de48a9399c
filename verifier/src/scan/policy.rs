//! Which pickle imports are acceptable, by context. Allowlist first: an import is fine only if it
//! is listed for the context; everything else is a finding, and known code-execution gadgets are
//! graded critical so the report says how bad it is.

use super::Severity;

/// Who will unpickle the stream, which decides what it may legitimately import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// `torch.load`: tensor and storage rebuilders, dtypes, plain containers (and the numpy
    /// reconstruction callables PyTorch allows for numpy values in checkpoints).
    Torch,
    /// `pickle.load`, `joblib.load`, `np.load(allow_pickle=True)`: plain containers, numpy
    /// arrays, and estimator classes of scikit-learn/scipy.
    Plain,
}

/// The decision on one import.
pub(crate) enum Decision {
    Allowed,
    Refused(Severity, String),
}

/// Python 2 names and moved modules that resolve to the same object at load time.
fn canonical_module(m: &str) -> String {
    let m = match m {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "posix" | "nt" => "os",
        other => other,
    };
    if let Some(rest) = m.strip_prefix("numpy.core") {
        return format!("numpy._core{rest}");
    }
    m.to_owned()
}

const BUILTIN_DATA: &[&str] = &[
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
    "unicode",
    "long",
    "Ellipsis",
    "NotImplemented",
];

/// Allowed in every context: containers and value types whose constructors run no user code.
fn common_allowed(module: &str, name: &str) -> bool {
    match module {
        "builtins" => BUILTIN_DATA.contains(&name),
        "copyreg" => name == "_reconstructor",
        "_codecs" => name == "encode",
        "collections" => matches!(name, "OrderedDict" | "defaultdict" | "Counter" | "deque"),
        "datetime" => matches!(
            name,
            "datetime" | "date" | "time" | "timedelta" | "timezone"
        ),
        "decimal" => name == "Decimal",
        "fractions" => name == "Fraction",
        "uuid" => name == "UUID",
        "numpy" => NUMPY_TYPES.contains(&name),
        "re" => name == "_compile",
        "pathlib" => matches!(
            name,
            "Path" | "PosixPath" | "WindowsPath" | "PurePosixPath" | "PureWindowsPath"
        ),
        "argparse" => name == "Namespace",
        "types" => name == "SimpleNamespace",
        "numpy._core.multiarray" => matches!(name, "_reconstruct" | "scalar"),
        "numpy.dtypes" => is_class_name(name) && name.ends_with("DType"),
        "numpy.random._pickle" => {
            matches!(
                name,
                "__randomstate_ctor" | "__bit_generator_ctor" | "__generator_ctor"
            )
        }
        "numpy.random.mtrand" => name == "RandomState",
        "numpy.random._mt19937" => name == "MT19937",
        "numpy.random._pcg64" => matches!(name, "PCG64" | "PCG64DXSM"),
        "numpy.random._generator" => name == "Generator",
        "numpy.ma.core" => matches!(name, "_mareconstruct" | "MaskedArray"),
        _ => false,
    }
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

fn torch_allowed(module: &str, name: &str) -> bool {
    match module {
        "torch._utils" => {
            name.starts_with("_rebuild_")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && name != "_rebuild_from_type"
        }
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch" => {
            (name.ends_with("Storage") && is_class_name(name)) || TORCH_DTYPES.contains(&name)
        }
        "torch.storage" => matches!(name, "UntypedStorage" | "TypedStorage"),
        "torch.nn.parameter" => matches!(name, "Parameter" | "UninitializedParameter"),
        "torch.serialization" => name == "_get_layout",
        "torch.torch_version" => name == "TorchVersion",
        // Lightning keeps hyper-parameters in a dict subclass.
        "pytorch_lightning.utilities.parsing"
        | "lightning_fabric.utilities.data"
        | "lightning.fabric.utilities.data" => name == "AttributeDict",
        // Whole-module saves: torch's own layer classes only restore their attribute dicts.
        // TorchScript archives name their compiled classes under `__torch__`, resolved by the
        // TorchScript compilation unit, never imported as Python.
        m if m.starts_with("torch.nn.modules.")
            || m == "__torch__"
            || m.starts_with("__torch__.") =>
        {
            is_class_name(name) || m.starts_with("__torch__")
        }
        "torch.jit._pickle" => matches!(
            name,
            "build_intlist"
                | "build_tensorlist"
                | "build_doublelist"
                | "build_boollist"
                | "restore_type_tag"
        ),
        _ => false,
    }
}

/// Classes of estimator libraries whose `__setstate__` only restores attributes. Functions from
/// these packages are not included: only CamelCase class names outside private testing modules.
fn estimator_allowed(module: &str, name: &str) -> bool {
    let lib = module.split('.').next().unwrap_or("");
    if !matches!(lib, "sklearn" | "scipy" | "joblib") {
        return false;
    }
    if module
        .split('.')
        .any(|p| p.contains("test") || p == "externals")
    {
        return false;
    }
    if lib == "scipy" && !module.starts_with("scipy.sparse") {
        return false;
    }
    if lib == "scipy" {
        // scipy's sparse containers are lower-case classes.
        let sparse = ["csr", "csc", "coo", "bsr", "dia", "dok", "lil"]
            .iter()
            .any(|k| name == format!("{k}_matrix") || name == format!("{k}_array"));
        return sparse || is_class_name(name);
    }
    if lib == "joblib" {
        return module == "joblib.numpy_pickle"
            && matches!(name, "NumpyArrayWrapper" | "NDArrayWrapper");
    }
    is_class_name(name)
}

/// `CamelCase` identifier with no dots: a class, by Python naming convention.
fn is_class_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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
];

/// Decides whether `module.name` may be imported in `ctx`.
pub(crate) fn decide(ctx: Context, module: &str, name: &str) -> Decision {
    let canon = canonical_module(module);
    let dotted = name.contains('.');
    if !dotted {
        let allowed = common_allowed(&canon, name)
            || match ctx {
                Context::Torch => torch_allowed(&canon, name),
                Context::Plain => estimator_allowed(&canon, name),
            };
        if allowed {
            return Decision::Allowed;
        }
    }
    let sev = grade(&canon, name);

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
    Decision::Refused(sev, why)
}

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

    fn sev(ctx: Context, m: &str, n: &str) -> Option<Severity> {
        match decide(ctx, m, n) {
            Decision::Allowed => None,
            Decision::Refused(s, _) => Some(s),
        }
    }

    #[test]
    fn torch_rebuilders_allowed_only_in_torch_context() {
        assert_eq!(
            sev(Context::Torch, "torch._utils", "_rebuild_tensor_v2"),
            None
        );
        assert_eq!(sev(Context::Torch, "torch", "FloatStorage"), None);
        assert_eq!(sev(Context::Torch, "collections", "OrderedDict"), None);
        assert!(sev(Context::Plain, "torch._utils", "_rebuild_tensor_v2").is_some());
        assert!(sev(Context::Torch, "sklearn.linear_model", "LogisticRegression").is_some());
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
        ] {
            assert_eq!(
                sev(Context::Torch, m, n),
                Some(Severity::Critical),
                "{m}.{n}"
            );
            assert_eq!(
                sev(Context::Plain, m, n),
                Some(Severity::Critical),
                "{m}.{n}"
            );
        }
    }

    #[test]
    fn unknown_import_is_high() {
        assert_eq!(
            sev(Context::Plain, "mypackage.models", "Thing"),
            Some(Severity::High)
        );
        assert_eq!(
            sev(Context::Plain, "numpy.core.multiarray", "_reconstruct"),
            None
        );
        assert_eq!(
            sev(Context::Plain, "sklearn.utils._testing", "Thing"),
            Some(Severity::Critical)
        );
    }
}
