//! A small, stable hash for name suffixes.
//!
//! FNV-1a (64 bit): no dependency, and stable across Rust versions and platforms, which
//! `std::hash` does not promise. Names derived from it must never change between releases, or
//! existing twin namespaces would be orphaned.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a of `text`'s UTF-8 bytes.
pub(crate) fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The 8 lower-case hex digits of the high half of [`fnv1a64`].
pub(crate) fn short_hash(text: &str) -> String {
    format!("{:08x}", fnv1a64(text) >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(short_hash("foobar"), "85944171");
    }
}
