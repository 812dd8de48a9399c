//! One generated sample per technique family, through the public `scan` API: the verdict and
//! the finding that names the technique.

use std::io::{Cursor, Write};

use verifier::{scan, Format, ScanReport, Severity, Verdict};

fn run(bytes: Vec<u8>) -> ScanReport {
    let n = bytes.len() as u64;
    scan(Cursor::new(bytes), n).expect("in-memory input cannot fail to read")
}

fn has(r: &ScanReport, needle: &str) -> bool {
    r.findings.iter().any(|f| f.message.contains(needle))
}

struct ZipEntry<'a> {
    name: &'a str,
    data: &'a [u8],
    deflate: bool,
    unix_mode: Option<u32>,
}

fn entry<'a>(name: &'a str, data: &'a [u8]) -> ZipEntry<'a> {
    ZipEntry {
        name,
        data,
        deflate: false,
        unix_mode: None,
    }
}

/// A minimal zip writer (stored or deflated entries, optional Unix mode).
fn zip(entries: &[ZipEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for e in entries {
        let body = if e.deflate {
            let mut enc =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(e.data).expect("vec write");
            enc.finish().expect("vec write")
        } else {
            e.data.to_vec()
        };
        let method: u16 = if e.deflate { 8 } else { 0 };
        let crc = crc32fast::hash(e.data);
        let off = out.len() as u32;
        out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00");
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&body);
        let made_by: u16 = if e.unix_mode.is_some() {
            0x0314
        } else {
            0x0014
        };
        cd.extend_from_slice(b"PK\x01\x02");
        cd.extend_from_slice(&made_by.to_le_bytes());
        cd.extend_from_slice(b"\x14\x00\x00\x00");
        cd.extend_from_slice(&method.to_le_bytes());
        cd.extend_from_slice(&[0; 4]);
        cd.extend_from_slice(&crc.to_le_bytes());
        cd.extend_from_slice(&(body.len() as u32).to_le_bytes());
        cd.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        cd.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        cd.extend_from_slice(&[0; 8]);
        cd.extend_from_slice(&(e.unix_mode.unwrap_or(0) << 16).to_le_bytes());
        cd.extend_from_slice(&off.to_le_bytes());
        cd.extend_from_slice(e.name.as_bytes());
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

const EVIL: &[u8] = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.";
const STATE_DICT: &[u8] = b"\x80\x02ccollections\nOrderedDict\n)R.";

#[test]
fn deflated_pickle_in_a_plain_zip_is_found() {
    let r = run(zip(&[ZipEntry {
        deflate: true,
        ..entry("x/model.pkl", EVIL)
    }]));
    assert_eq!(r.format, Format::Zip);
    assert!(has(&r, "calls posix.system"), "{:?}", r.findings);
}

#[test]
fn zip_bomb_by_ratio_is_refused() {
    let zeros = vec![0u8; 17 << 20];
    let r = run(zip(&[ZipEntry {
        deflate: true,
        ..entry("weights.bin", &zeros)
    }]));
    assert!(has(&r, "zip bomb"), "{:?}", r.findings);
    assert!(!r.is_clean());
}

#[test]
fn absolute_and_symlink_entries_are_refused() {
    let r = run(zip(&[entry("/etc/cron.d/x", b"hi")]));
    assert!(has(&r, "is absolute"));
    let r = run(zip(&[ZipEntry {
        unix_mode: Some(0o120777),
        ..entry("link", b"/etc/passwd")
    }]));
    assert!(has(&r, "symbolic-link"));
}

#[test]
fn nested_zip_is_scanned_inside() {
    let inner = zip(&[
        entry("archive/data.pkl", EVIL),
        entry("archive/data/0", b"\0\0\0\0"),
    ]);
    let r = run(zip(&[entry("model/pytorch_model.bin", &inner)]));
    assert!(r
        .findings
        .iter()
        .any(|f| f.location == "model/pytorch_model.bin/archive/data.pkl"));
    assert!(!r.is_clean());
}

#[test]
fn clean_torch_zip_is_clean_and_skips_tensor_bytes() {
    let r = run(zip(&[
        entry("archive/data.pkl", STATE_DICT),
        entry("archive/data/0", &[0x80; 64]),
    ]));
    assert_eq!(r.format, Format::PytorchZip);
    assert!(r.is_clean(), "{:?}", r.findings);
}

#[test]
fn plain_pickle_rules_differ_from_torch_rules() {
    let rebuild = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R.";
    assert!(!run(rebuild.to_vec()).is_clean());
    let r = run(zip(&[entry("archive/data.pkl", rebuild)]));
    assert!(r.is_clean(), "{:?}", r.findings);
}

fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}");
    while (h.len() + 11) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn npy_object_arrays_are_decoded_and_plain_arrays_sized() {
    let r = run(npy("'|O'", "(1,)", EVIL));
    assert!(has(&r, "object dtype") && has(&r, "calls posix.system"));
    let r = run(npy("[('a', [('b', '|O')])]", "(1,)", EVIL));
    assert!(
        !r.is_clean(),
        "nested structured object field: {:?}",
        r.findings
    );
    assert!(run(npy("'<f4'", "(2,)", &[0; 8])).is_clean());
    let mut body = vec![0u8; 8];
    body.extend_from_slice(EVIL);
    assert!(has(
        &run(npy("'<f4'", "(2,)", &body)),
        "after the array data"
    ));
}

#[test]
fn joblib_object_array_pickle_is_followed() {
    // NumpyArrayWrapper for an object array: joblib unpickles a nested pickle right after BUILD.
    let mut b = b"\x80\x04\x8c\x13joblib.numpy_pickle\x8c\x11NumpyArrayWrapper\x93)\x81}(".to_vec();
    b.extend_from_slice(b"\x8c\x05shapeK\x01\x85");
    b.extend_from_slice(b"\x8c\x05dtype\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02O8\x89\x88\x87R");
    b.extend_from_slice(b"ub");
    b.extend_from_slice(EVIL);
    b.push(b'.');
    let r = run(b);
    assert_eq!(r.format, Format::Joblib);
    assert!(has(&r, "calls posix.system"), "{:?}", r.findings);
}

#[test]
fn gguf_huge_string_length_is_malformed() {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(b"general.name");
    let r = run(b);
    assert!(has(&r, "string length"), "{:?}", r.findings);
    assert!(r.findings.iter().any(|f| f.severity >= Severity::High));
}

#[test]
fn jinja_template_file_is_checked() {
    let r = run(b"{{ cycler.__init__.__globals__.os.popen('id').read() }}".to_vec());
    assert_eq!(r.format, Format::Text);
    assert!(!r.is_clean());
    assert!(run(b"# Model card\n\nUse it well.\n".to_vec()).is_clean());
}

#[test]
fn tokenizer_config_template_list_is_checked() {
    let j = br#"{"chat_template": [{"name": "default", "template": "{{ x }}"}, {"name": "rag", "template": "{{ self.__init__.__globals__ }}"}]}"#;
    let r = run(j.to_vec());
    assert_eq!(r.format, Format::Json);
    assert!(has(&r, "chat_template[rag]"), "{:?}", r.findings);
}

#[test]
fn zlib_compressed_pickle_is_scanned() {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(EVIL).expect("vec write");
    let r = run(enc.finish().expect("vec write"));
    assert!(has(&r, "calls posix.system"));
}

#[test]
fn unsupported_formats_are_unscannable() {
    let r = run(b"\xfd7zXZ\x00\x00\x04rest".to_vec());
    assert!(matches!(r.verdict, Verdict::Unscannable { .. }), "{:?}", r);
    assert!(!r.is_clean());
}

#[test]
fn tar_member_traversal_and_payload() {
    let mut hdr = [0u8; 512];
    let name = b"../../evil.pkl";
    hdr[..name.len()].copy_from_slice(name);
    let size = format!("{:011o}\0", EVIL.len());
    hdr[124..136].copy_from_slice(size.as_bytes());
    hdr[156] = b'0';
    hdr[257..263].copy_from_slice(b"ustar\0");
    hdr[148..156].copy_from_slice(b"        ");
    let sum: u32 = hdr.iter().map(|b| u32::from(*b)).sum();
    hdr[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut t = hdr.to_vec();
    t.extend_from_slice(EVIL);
    t.resize(512 + 512, 0);
    t.resize(t.len() + 1024, 0);
    let r = run(t);
    assert_eq!(r.format, Format::Tar);
    assert!(
        has(&r, "escapes the extraction directory") && has(&r, "calls posix.system"),
        "{:?}",
        r.findings
    );
}

#[test]
fn text_starting_like_a_protocol_0_opcode_is_text() {
    // 'c' is GLOBAL and 'i' is INST: these decode as an import, then fail without a call.
    for t in [
        "cat\ndog\nfish\n",
        "install\nrequirements\nhere\n",
        "config: yes\nname: x\n",
    ] {
        let r = run(t.as_bytes().to_vec());
        assert!(r.is_clean(), "{t:?}: {:?}", r.findings);
        assert_eq!(r.format, Format::Text);
    }
    // A truncated protocol-0 pickle that already called something is still a pickle.
    let r = run(b"cos\nsystem\n(S'id'\ntR(".to_vec());
    assert!(has(&r, "calls os.system"), "{:?}", r.findings);
}
