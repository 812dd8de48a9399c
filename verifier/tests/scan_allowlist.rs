//! The allowlist tells reconstructing data from calling a function: each sample is a pickle a
//! real library writes (clean) or a technique that dresses a call up as reconstruction (refused,
//! for the reason named). Written by hand, opcode by opcode, so each one tests one rule.

use std::io::Cursor;

use verifier::{scan, scan_with, ScanOptions, ScanReport, Severity};

fn run(bytes: &[u8]) -> ScanReport {
    scan(Cursor::new(bytes.to_vec()), bytes.len() as u64).expect("in-memory input")
}

fn refused_for(bytes: &[u8], needle: &str) {
    let r = run(bytes);
    assert!(!r.is_clean(), "clean: {:?}", r.findings);
    assert!(
        r.findings
            .iter()
            .any(|f| f.severity >= Severity::High && f.message.contains(needle)),
        "no high finding mentions {needle:?}: {:#?}",
        r.findings
    );
}

#[test]
fn what_python_writes_for_range_and_old_numpy_is_clean() {
    // range(0, 10, 1) at protocol 2, as CPython 3 writes it (fix_imports: __builtin__.xrange).
    for b in [
        &b"\x80\x02c__builtin__\nxrange\nq\x00K\x00K\nK\x01\x87q\x01Rq\x02."[..],
        // numpy 1.x spelling of the array reconstructor, and copy_reg at protocol 0.
        b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I0\ntS'b'\ntR.",
        b"ccopy_reg\n_reconstructor\n(cargparse\nNamespace\nc__builtin__\nobject\nNtR(dS'lr'\nF0.1\nsb.",
    ] {
        let r = run(b);
        assert!(r.is_clean(), "{:?}", r.findings);
    }
}

#[test]
fn build_does_not_make_an_unknown_class_data() {
    // NEWOBJ of an unlisted class, then BUILD: its __setstate__ could do anything.
    refused_for(b"\x80\x02cmypkg\nEvil\n)\x81}b.", "mypkg.Evil");
}

#[test]
fn a_class_admitted_for_reconstruction_is_not_callable() {
    // REDUCE would run TrainingArguments.__init__/__post_init__; transformers writes NEWOBJ.
    refused_for(
        b"ctransformers.training_args\nTrainingArguments\n(S'/tmp'\ntR.",
        "admitted only for reconstruction",
    );
    refused_for(
        b"csklearn.linear_model._ridge\nRidge\n(tR.",
        "admitted only for reconstruction",
    );
}

#[test]
fn reconstructors_do_not_launder_an_unknown_class() {
    refused_for(
        b"ccopy_reg\n_reconstructor\n(cevil\nThing\nc__builtin__\nobject\nNtR.",
        "evil.Thing",
    );
    refused_for(
        b"cnumpy.core.multiarray\n_reconstruct\n(cevil\nArr\n(I0\ntS'b'\ntR.",
        "evil.Arr",
    );
    refused_for(
        b"cpandas._libs.arrays\n__pyx_unpickle_NDArrayBacked\n(cevil\nArr\nI0\nNtR.",
        "evil.Arr",
    );
    // The class to instantiate is itself computed by a call: not a plain import.
    refused_for(
        b"ccopy_reg\n_reconstructor\n(ccollections\nOrderedDict\n(tRc__builtin__\nobject\nNtR.",
        "not a plain import",
    );
    // A non-object base has its __init__ run: a state class as base is a call in disguise.
    refused_for(
        b"ccopy_reg\n_reconstructor\n(cargparse\nNamespace\nctransformers.training_args\nTrainingArguments\n(dtR.",
        "base given to",
    );
}

#[test]
fn functions_of_allowed_libraries_are_not_allowed() {
    let r = run(b"cpandas\nread_pickle\n(S'x.pkl'\ntR.");
    assert_eq!(r.worst().map(|f| f.severity), Some(Severity::Critical));
    refused_for(b"cpandas.io.pytables\nHDFStore\n(S'x.h5'\ntR.", "pandas.io");
    refused_for(b"cnumpy\nload\n(S'x.npy'\ntR.", "numpy.load");
}

#[test]
fn configured_globals_are_admitted_and_reported() {
    let b = b"\x80\x02cmypkg.models\nConfig\n)\x81}b.";
    let opts = ScanOptions::new()
        .allow_global("mypkg.models.Config")
        .expect("a plain class name");
    let r = scan_with(Cursor::new(b.to_vec()), b.len() as u64, &opts).expect("in-memory");
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(r.admitted_globals, vec!["mypkg.models.Config".to_owned()]);
    assert!(run(b).admitted_globals.is_empty());
    assert!(ScanOptions::new().allow_global("os.system").is_err());
    assert!(ScanOptions::new().allow_global("posix.system").is_err());
}

#[test]
fn explain_lists_each_use_with_its_decision() {
    let b = b"c__builtin__\nxrange\n(I0\nI3\nI1\ntR.";
    let opts = ScanOptions::new().explain();
    let r = scan_with(Cursor::new(b.to_vec()), b.len() as u64, &opts).expect("in-memory");
    let uses: Vec<(&str, &str, bool)> = r
        .globals
        .iter()
        .map(|g| (g.global.as_str(), g.usage.as_str(), g.allowed))
        .collect();
    assert_eq!(
        uses,
        vec![
            ("__builtin__.xrange", "import", true),
            ("__builtin__.xrange", "REDUCE", true)
        ]
    );
    assert_eq!(r.globals[0].resolves_to.as_deref(), Some("builtins.range"));
    assert!(run(b).globals.is_empty(), "explain is opt-in");
}
