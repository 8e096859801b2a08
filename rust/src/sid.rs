//! Session ids exactly as the Python engine makes them:
//! `blake2b(f"{partition}\x1f{key}\x1f{seq}".encode(), digest_size=16).hexdigest()`.

use std::io::Write;

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn session_id_hex(buf: &mut Vec<u8>, partition: i64, key: &[u8], seq: u64, out: &mut [u8; 32]) {
    buf.clear();
    write!(buf, "{partition}\x1f").expect("write to a Vec");
    buf.extend_from_slice(key);
    write!(buf, "\x1f{seq}").expect("write to a Vec");
    let hash = blake2b_simd::Params::new().hash_length(16).hash(buf);
    for (i, b) in hash.as_bytes().iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}
