//! HPACK's Huffman code (RFC 7541 appendix B), decoding only: imageshim sends its
//! strings raw and reads whatever the backend chose. The code is canonical, so the bit
//! length of every symbol's code is all it takes to rebuild it. Must not allocate per
//! string beyond the output.

use std::sync::OnceLock;

/// Bit length of the code of every symbol, 0..=255 then EOS (256).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const EOS: u16 = 256;
const MAX_LENGTH: usize = 30;

/// Why a Huffman string cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HuffmanError {
    #[error("huffman string contains the end-of-string symbol")]
    EndOfStringInside,
    #[error("huffman string has invalid padding")]
    BadPadding,
}

/// The canonical code laid out for decoding: per bit length, the first code, how many
/// codes and where their symbols start in `symbols` (sorted by length, then symbol).
struct Canonical {
    first_code: [u32; MAX_LENGTH + 1],
    count: [u32; MAX_LENGTH + 1],
    first_index: [u16; MAX_LENGTH + 1],
    symbols: [u16; 257],
}

fn canonical() -> &'static Canonical {
    static TABLE: OnceLock<Canonical> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Canonical {
            first_code: [0; MAX_LENGTH + 1],
            count: [0; MAX_LENGTH + 1],
            first_index: [0; MAX_LENGTH + 1],
            symbols: [0; 257],
        };
        let mut next = 0usize;
        for length in 1..=MAX_LENGTH {
            table.first_index[length] = next as u16;
            for (symbol, bits) in CODE_LENGTHS.iter().enumerate() {
                if usize::from(*bits) == length {
                    table.symbols[next] = symbol as u16;
                    next += 1;
                }
            }
            table.count[length] = u32::from(next as u16 - table.first_index[length]);
        }
        let mut code = 0u32;
        for length in 1..=MAX_LENGTH {
            table.first_code[length] = code;
            code = (code + table.count[length]) << 1;
        }
        table
    })
}

/// Appends the decoded form of `encoded` to `out`.
pub(super) fn decode(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let table = canonical();
    out.reserve(encoded.len() * 8 / 5 + 1);
    let (mut code, mut length) = (0u32, 0usize);
    for byte in encoded {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            length += 1;
            let offset = code.wrapping_sub(table.first_code[length]);
            if offset < table.count[length] {
                let symbol =
                    table.symbols[usize::from(table.first_index[length]) + offset as usize];
                if symbol == EOS {
                    return Err(HuffmanError::EndOfStringInside);
                }
                out.push(symbol as u8);
                (code, length) = (0, 0);
            } else if length == MAX_LENGTH {
                return Err(HuffmanError::EndOfStringInside);
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (the start of EOS's code).
    if length > 7 || code != (1u32 << length) - 1 {
        return Err(HuffmanError::BadPadding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(hex: &str) -> Result<Vec<u8>, HuffmanError> {
        let bytes = ::hex::decode(hex).unwrap();
        let mut out = Vec::new();
        decode(&bytes, &mut out).map(|()| out)
    }

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 7541 C.4.1 and C.6.1.
        assert_eq!(
            decoded("f1e3c2e5f23a6ba0ab90f4ff").unwrap(),
            b"www.example.com"
        );
        assert_eq!(decoded("a8eb10649cbf").unwrap(), b"no-cache");
        assert_eq!(decoded("6402").unwrap(), b"302");
        assert_eq!(decoded("aec3771a4b").unwrap(), b"private");
        assert_eq!(
            decoded("9d29ad171863c78f0b97c8e9ae82ae43d3").unwrap(),
            b"https://www.example.com"
        );
    }

    #[test]
    fn bad_padding_and_eos_are_errors() {
        assert_eq!(decoded("1f").unwrap(), b"a", "'a' and ones");
        assert_eq!(decoded("18"), Err(HuffmanError::BadPadding), "zero padding");
        assert_eq!(
            decoded("1fff"),
            Err(HuffmanError::BadPadding),
            "8 bits of padding"
        );
        assert_eq!(decoded("ffffffff"), Err(HuffmanError::EndOfStringInside));
    }
}
