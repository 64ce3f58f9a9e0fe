//! CBOR encoding with ciborium, with an explicit size limit on decode.

use serde::{de::DeserializeOwned, Serialize};

use crate::limits::MAX_CBOR_DOCUMENT_BYTES;

/// Why a CBOR document could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("document is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    #[error("{trailing_bytes} trailing bytes after the CBOR document")]
    Trailing { trailing_bytes: usize },
}

/// Encodes `value` as one CBOR document.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail with an I/O error, and every type in this
    // crate serializes without custom failure paths.
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into a Vec cannot fail");
    out
}

/// Decodes one CBOR document of at most `MAX_CBOR_DOCUMENT_BYTES`, with no
/// trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_CBOR_DOCUMENT_BYTES {
        return Err(DecodeError::TooLarge {
            size_bytes: bytes.len(),
            limit_bytes: MAX_CBOR_DOCUMENT_BYTES,
        });
    }
    let mut reader = bytes;
    // ciborium bounds nesting with its recursion limit (256 by default), so a
    // deeply nested hostile document is an error, not a stack overflow.
    let value =
        ciborium::from_reader(&mut reader).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::Trailing {
            trailing_bytes: reader.len(),
        });
    }
    Ok(value)
}
