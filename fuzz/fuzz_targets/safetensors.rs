//! The safetensors header checks: the first 8 fuzz bytes are the header length, then a `{` is
//! forced so the input is routed to the safetensors scanner.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (len_bytes, rest) = data.split_at(data.len().min(8));
    let mut input = len_bytes.to_vec();
    input.resize(8, 0);
    input.push(b'{');
    input.extend_from_slice(rest);
    let len = input.len() as u64;
    let _ = verifier::scan(std::io::Cursor::new(input), len);
});
