//! Generated object bodies: reproducible bytes of a requested size.

use bytesize::ByteSize;

use crate::kinds::StepError;

pub(super) fn to_len(size: ByteSize) -> Result<usize, StepError> {
    usize::try_from(size.as_u64())
        .map_err(|_| StepError::Error(format!("size {size} does not fit in memory")))
}

/// Deterministic pseudo-random bytes (splitmix64): incompressible, so a store that
/// dedups or truncates cannot pass by accident, and a mismatch is reproducible.
pub(super) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_varied() {
        let a = pattern(7, 1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, pattern(7, 1000));
        assert_ne!(a, pattern(8, 1000));
        // A prefix of a longer pattern: sizes do not change the bytes.
        assert_eq!(&pattern(7, 2000)[..1000], &a[..]);
        let distinct: std::collections::BTreeSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 200);
    }
}
