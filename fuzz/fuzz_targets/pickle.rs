//! The pickle decoder: every input starts with a PROTO opcode so it is routed to it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input: Vec<u8> = b"\x80\x04".to_vec();
    input.extend_from_slice(data);
    let len = input.len() as u64;
    // Any input must produce a report (or an I/O error, impossible on a Cursor): never a panic,
    // never an allocation sized by the input's claims.
    let _ = verifier::scan(std::io::Cursor::new(input), len);
});
