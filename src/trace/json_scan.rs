//! Where a JSON text's quotes, backslashes and control characters are, as one bit per byte.
//!
//! These are the only bytes that end a run of plain string content, and (in valid JSON, where a
//! control character can only be the whitespace `\n`, `\r` or `\t` between tokens) exactly the
//! bytes that must be escaped when the text is written inside a JSON string. The JSON body pass
//! ([`super::json_body`]) marks them once, 16 bytes at a time with SSE2 on x86_64 (part of every
//! x86_64 CPU) or 8 at a time in a word elsewhere, then finds the end of each string with a
//! bit scan and escapes the text by walking the bits, instead of testing every byte as it goes.

/// Words kept on the stack: bodies up to 2 KiB need no allocation for their bits.
pub(super) const STACK_WORDS: usize = 32;

/// The marks of a text: bit `i % 64` of word `i / 64` is set when `bytes[i]` is `"`, `\` or
/// below 0x20.
#[derive(Debug, Clone, Copy)]
pub(super) struct Specials<'w> {
    pub(super) words: &'w [u64],
    /// Whether any of the marked bytes is a control character: without one (a compact body),
    /// every marked byte is a quote or a backslash.
    pub(super) controls: bool,
}

/// The marks of `bytes`: the words are in `stack` when they fit, else in `heap`.
pub(super) fn specials<'w>(
    bytes: &[u8],
    stack: &'w mut [u64; STACK_WORDS],
    heap: &'w mut Vec<u64>,
) -> Specials<'w> {
    let count = bytes.len().div_ceil(64);
    let words: &mut [u64] = if count <= STACK_WORDS {
        &mut stack[..count]
    } else {
        heap.resize(count, 0);
        heap.as_mut_slice()
    };
    let controls = mark(bytes, words);
    Specials { words, controls }
}

/// Fills `words` (one per 64 bytes, the last one partial) for `bytes`, and says whether a
/// control character was among the marked bytes.
fn mark(bytes: &[u8], words: &mut [u64]) -> bool {
    let mut controls = false;
    let mut blocks = bytes.chunks_exact(64);
    for (word, block) in words.iter_mut().zip(&mut blocks) {
        if let Some(block) = block.first_chunk::<64>() {
            let (bits, control) = block_bits(block);
            *word = bits;
            controls |= control;
        }
    }
    let rest = blocks.remainder();
    if let Some(last) = words.get_mut(bytes.len() / 64).filter(|_| !rest.is_empty()) {
        // Padded with spaces, which are not marked.
        let mut block = [b' '; 64];
        block[..rest.len()].copy_from_slice(rest);
        let (bits, control) = block_bits(&block);
        *last = bits;
        controls |= control;
    }
    controls
}

/// The first marked position at or after `from`.
#[inline(always)]
pub(super) fn next(words: &[u64], from: usize) -> Option<usize> {
    let mut index = from / 64;
    let mut bits = words.get(index)? & (u64::MAX << (from % 64));
    while bits == 0 {
        index += 1;
        bits = *words.get(index)?;
    }
    Some(index * 64 + bits.trailing_zeros() as usize)
}

/// The marks of `block`, and whether one of them is a control character.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn block_bits(block: &[u8; 64]) -> (u64, bool) {
    // SAFETY: the function needs SSE2, which the `cfg` above makes sure this build targets (it
    // is in the x86_64 baseline, so every x86_64 CPU has it).
    unsafe { sse2::block_bits(block) }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn block_bits(block: &[u8; 64]) -> (u64, bool) {
    swar::block_bits(block)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x, _mm_setzero_si128,
    };

    /// One bit per byte of `block`, as [`super::specials`] marks them, 16 bytes at a time.
    /// Each 16 bytes are read as two words (which the compiler turns into one unaligned load)
    /// so that no raw pointer is needed.
    #[target_feature(enable = "sse2")]
    pub(super) fn block_bits(block: &[u8; 64]) -> (u64, bool) {
        let word = |at: usize| {
            block
                .get(at..at + 8)
                .and_then(|w| w.first_chunk::<8>())
                .map_or(0, |w| i64::from_le_bytes(*w))
        };
        let mut bits = 0;
        let mut controls = _mm_setzero_si128();
        for i in 0..4 {
            let v = _mm_set_epi64x(word(16 * i + 8), word(16 * i));
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Below 0x20, unsigned: the byte is its own minimum with 0x1f.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            controls = _mm_or_si128(controls, control);
            let marked = _mm_or_si128(_mm_or_si128(quote, backslash), control);
            bits |= u64::from(_mm_movemask_epi8(marked) as u16) << (16 * i);
        }
        (bits, _mm_movemask_epi8(controls) != 0)
    }
}

/// The portable way, for targets without SSE2 (and tested against it on x86_64).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
mod swar {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const LOW: u64 = u64::from_le_bytes([0x7f; 8]);

    pub(super) fn block_bits(block: &[u8; 64]) -> (u64, bool) {
        let (mut bits, mut controls) = (0, false);
        for (i, chunk) in block.chunks_exact(8).enumerate() {
            if let Some(chunk) = chunk.first_chunk::<8>() {
                let (marked, control) = bits8(u64::from_le_bytes(*chunk));
                bits |= u64::from(marked) << (8 * i);
                controls |= control;
            }
        }
        (bits, controls)
    }

    /// One bit per byte of `word` (little-endian). Each byte's test is exact (no borrow crosses
    /// into the next byte, unlike the "has a zero byte" trick): the high bit of `(b & 0x7f) +
    /// 0x7f` is set when the low seven bits are not all zero, and of `(b & 0x7f) + 0x60` when
    /// they are at least 0x20. Also whether one of the bytes is a control character.
    fn bits8(word: u64) -> (u8, bool) {
        let nonzero = |x: u64| ((x & LOW) + LOW) | x;
        let quote = nonzero(word ^ (ONES * u64::from(b'"')));
        let backslash = nonzero(word ^ (ONES * u64::from(b'\\')));
        let printable = ((word & LOW) + ONES * 0x60) | word;
        let flags = !(quote & backslash & printable) & HIGH;
        // Each byte's flag moved to bit 56 + its index: no two products share a bit.
        let bits = ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8;
        (bits, !printable & HIGH != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(byte: u8) -> bool {
        matches!(byte, b'"' | b'\\' | 0..=0x1f)
    }

    /// Every 64-byte block a test draws, from bytes that are special, plain, or next to a
    /// special one in value (which a borrow between bytes would confuse).
    fn blocks() -> impl Iterator<Item = [u8; 64]> {
        let alphabet = [
            0, 1, 0x1f, 0x20, b'!', b'"', b'#', b'[', b'\\', b']', b'a', 0x7f, 0x80, 0x9f, 0xa0,
            0xa2, 0xdc, 0xff, b'\n', b'\t', b'\r',
        ];
        let mut rng = crate::trace::tests::Xorshift(0x9e37_79b9_7f4a_7c15);
        (0..20_000).map(move |_| {
            let mut block = [0u8; 64];
            for byte in &mut block {
                let state = rng.next();
                *byte = if state % 5 == 0 {
                    (state >> 8) as u8
                } else {
                    alphabet[(state >> 16) as usize % alphabet.len()]
                };
            }
            block
        })
    }

    /// The marks and whether a control character is among them, one byte at a time.
    fn scalar(block: &[u8; 64]) -> (u64, bool) {
        let bits = (0..64).fold(0, |bits, i| bits | (u64::from(special(block[i])) << i));
        (bits, block.iter().any(|&b| b < 0x20))
    }

    #[test]
    fn the_vector_and_word_paths_mark_exactly_the_quotes_backslashes_and_control_bytes_and_tell_controls(
    ) {
        for block in blocks() {
            let want = scalar(&block);
            assert_eq!(swar::block_bits(&block), want, "{block:?}");
            assert_eq!(block_bits(&block), want, "{block:?}");
        }
        for byte in 0..=u8::MAX {
            let block = [byte; 64];
            let want = (if special(byte) { u64::MAX } else { 0 }, byte < 0x20);
            assert_eq!(swar::block_bits(&block), want, "{byte}");
            assert_eq!(block_bits(&block), want, "{byte}");
        }
    }

    #[test]
    fn next_finds_each_marked_byte_in_order_across_words_and_the_partial_last_one() {
        for len in [0, 1, 63, 64, 65, 127, 128, 129, 2 * 64 * STACK_WORDS + 3] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 29 == 3 || i % 64 == 63 {
                        b'"'
                    } else {
                        b'x'
                    }
                })
                .collect();
            let (mut stack, mut heap) = ([0; STACK_WORDS], Vec::new());
            let words = specials(&bytes, &mut stack, &mut heap).words;
            let mut found = Vec::new();
            let mut from = 0;
            while let Some(at) = next(words, from) {
                found.push(at);
                from = at + 1;
            }
            let want: Vec<usize> = (0..len).filter(|&i| bytes[i] == b'"').collect();
            assert_eq!(found, want, "{len}");
        }
    }
}
