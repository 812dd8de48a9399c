//! DSSE pre-authentication encoding: the exact bytes an envelope signature covers.

/// `"DSSEv1 " + len(type) + " " + type + " " + len(payload) + " " + payload`, lengths in bytes.
pub(crate) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// The PAE that model_signing v0.2 produced by mistake (`pae_compat`, still accepted by
/// model_signing 1.1.1): an upper-case `V`, and the payload formatted as a Python `bytes` repr
/// (`b'...'` with escapes) while the length stays the raw byte length. Signers of that era
/// hashed it with SHA-256 whatever the curve.
pub(crate) fn legacy_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() * 2 + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEV1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    python_bytes_repr(payload, &mut out);
    out
}

/// CPython's `repr(bytes)`: single quotes unless the value contains `'` and no `"`; `\\`, the
/// quote, `\t`, `\n`, `\r` escaped; other bytes outside 0x20..0x7f as `\xhh`.
fn python_bytes_repr(bytes: &[u8], out: &mut Vec<u8>) {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push(b'b');
    out.push(quote);
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ if b == quote => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn legacy_pae_uses_python_repr() {
        assert_eq!(
            legacy_pae("t", b"a'b\n\\\x00\xff"),
            b"DSSEV1 1 t 7 b\"a'b\\n\\\\\\x00\\xff\"".to_vec()
        );
        assert_eq!(legacy_pae("t", b"x\"'"), b"DSSEV1 1 t 3 b'x\"\\''".to_vec());
    }
}
