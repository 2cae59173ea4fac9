//! Strict `.npy` reader. The header is a Python dict literal; it is tokenized, never evaluated,
//! and bounded in size before anything is read, so a hostile header costs at most
//! `MAX_HEADER_LEN` bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{DType, FileTensor, Shape, Stored, TensorLayout};
use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy itself refuses headers over 10 000 bytes unless told otherwise; we allow more slack.
const MAX_HEADER_LEN: usize = 65536;

/// What an `.npy` header declares.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub dtype: Stored,
    pub dims: Vec<usize>,
    /// Offset of the first data byte.
    pub data_offset: usize,
}

pub(crate) fn open(path: &Path) -> Result<FileTensor> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    // Only the header is read before validation, and never more than its size limit.
    let mut prefix = vec![0u8; file_len.min(MAX_HEADER_LEN as u64 + 12) as usize];
    file.read_exact(&mut prefix)
        .map_err(|e| Error::io(path, e))?;
    let layout = parse(&prefix, file_len).map_err(|m| Error::bad_input(path, m))?;
    Ok(FileTensor::new(path, file, layout))
}

/// Validates an `.npy` file from its first bytes (at least the header) and its length.
pub fn parse(prefix: &[u8], file_len: u64) -> Result<TensorLayout, String> {
    let header = parse_header(prefix)?;
    let shape = shape_from_dims(&header.dims)?;
    let data_len =
        data_bytes(&header.dims, header.dtype.size()).ok_or("declared shape overflows")?;
    let expected = (header.data_offset as u64)
        .checked_add(data_len)
        .ok_or("declared shape overflows")?;
    if file_len != expected {
        return Err(format!(
            "file is {file_len} bytes but its header declares {expected} ({} of shape {:?}){}",
            header.dtype.name(),
            header.dims,
            if file_len < expected {
                ": truncated"
            } else {
                ""
            }
        ));
    }
    let layer_bytes = (shape.heads * shape.head_elements() * header.dtype.size()) as u64;
    Ok(TensorLayout {
        shape,
        dtype: header.dtype,
        layer_offsets: (0..shape.layers as u64)
            .map(|l| header.data_offset as u64 + l * layer_bytes)
            .collect(),
    })
}

/// Bytes of data for `dims` of `element` bytes each; `None` on overflow.
pub fn data_bytes(dims: &[usize], element: usize) -> Option<u64> {
    dims.iter()
        .try_fold(element as u64, |acc, &d| acc.checked_mul(d as u64))
}

/// How a `.npy` file of numpy type string `descr` stores its elements: float64 too, which the
/// reader narrows to f32 ([`Stored`]).
pub fn stored_from_descr(descr: &str) -> Result<Stored, String> {
    match descr {
        "<f8" => Ok(Stored::F64),
        d => dtype_from_descr(d).map(Stored::Native),
    }
}

/// The dtype of a numpy type string such as `<f4`, as read in place. Public so that arrays
/// handed over in memory (the Python bindings, which narrow float64 themselves first) are
/// judged, and refused, in the same words as a saved `.npy`.
pub fn dtype_from_descr(descr: &str) -> Result<DType, String> {
    match descr {
        "<f4" => Ok(DType::F32),
        "<f2" => Ok(DType::F16),
        ">f4" | ">f2" | ">f8" => Err(format!(
            "big-endian dtype '{descr}' is not supported (save with arr.astype('<f4'))"
        )),
        "<f8" => Err(
            "dtype float64 ('<f8') is read from .npy files, not in place: \
                      arr.astype('float32')"
                .into(),
        ),
        other if other.contains('O') => Err("object dtype is not supported".into()),
        other => Err(format!(
            "dtype '{other}' is not supported (expected '<f4' float32 or '<f2' float16)"
        )),
    }
}

/// The (L, H, Q, K) shape of an array of `dims`, or why it is not attention; see
/// [`dtype_from_descr`] for why it is public.
pub fn shape_from_dims(dims: &[usize]) -> Result<Shape, String> {
    check_not_empty(dims)?;
    Shape::from_dims(dims).ok_or_else(|| {
        format!(
            "array has {} dimensions (expected 2 to 4: (Q,K), (H,Q,K) or (L,H,Q,K)){}",
            dims.len(),
            Shape::rank_hint(dims.len())
        )
    })
}

fn check_not_empty(dims: &[usize]) -> Result<(), String> {
    match dims.iter().position(|&d| d == 0) {
        Some(i) => Err(format!("dimension {i} of shape {dims:?} is empty")),
        None => Ok(()),
    }
}

/// Parses the magic, version, length and dict of an `.npy` header from the first bytes of a file.
pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not an .npy file (missing \\x93NUMPY magic)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start) = match (major, minor) {
        (1, 0) => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        (2, 0) | (3, 0) => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
            (len, 12)
        }
        _ => {
            return Err(format!(
                "unsupported .npy version {major}.{minor} (expected 1.0, 2.0 or 3.0)"
            ))
        }
    };
    if len > MAX_HEADER_LEN {
        return Err(format!(
            "header length {len} exceeds the {MAX_HEADER_LEN}-byte limit"
        ));
    }
    if start + len > bytes.len() {
        return Err(format!(
            "header declares {len} bytes but the file ends after {}: truncated",
            bytes.len() - start
        ));
    }
    let text = std::str::from_utf8(&bytes[start..start + len])
        .map_err(|_| "header is not valid UTF-8".to_string())?;
    if major < 3 && !text.is_ascii() {
        return Err("header of a version 1/2 file is not ASCII".into());
    }
    let dict = parse_dict(text)?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (key, value) in dict {
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("descr", Value::List) => {
                return Err("structured dtype is not supported (expected '<f4' or '<f2')".into())
            }
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(format!("header key '{key}' has the wrong type"))
            }
            _ => return Err(format!("unexpected header key '{key}'")),
        }
    }
    let descr = descr.ok_or("header has no 'descr'")?;
    let fortran = fortran.ok_or("header has no 'fortran_order'")?;
    let dims = shape.ok_or("header has no 'shape'")?;
    let dtype = stored_from_descr(&descr)?;
    if fortran && dims.len() > 1 {
        return Err("Fortran-order array is not supported (save with np.ascontiguousarray)".into());
    }
    check_not_empty(&dims)?;
    Ok(Header {
        dtype,
        dims,
        data_offset: start + len,
    })
}

#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// A list literal: only structured dtypes use one; its contents are not needed.
    List,
}

/// Parses `{'key': value, ...}` followed by whitespace. Values: string, True/False, tuple of
/// non-negative ints, or a list (skipped, balanced brackets).
fn parse_dict(text: &str) -> Result<Vec<(String, Value)>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        let value = p.value()?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("duplicate header key '{key}'"));
        }
        out.push((key, value));
        p.ws();
        if p.eat(b',') {
            continue;
        }
        p.ws();
        p.expect(b'}')?;
        break;
    }
    p.ws();
    if p.i != p.s.len() {
        return Err("unexpected text after the header dict".into());
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\t' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed header: expected '{}' at byte {}",
                c as char, self.i
            ))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(format!(
                    "malformed header: expected a string at byte {}",
                    self.i
                ))
            }
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != quote {
            if self.s[self.i] == b'\\' {
                return Err("malformed header: escapes in strings are not supported".into());
            }
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err("malformed header: unterminated string".into());
        }
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(out)
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.s.get(self.i) {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    self.ws();
                    if self.eat(b')') {
                        break;
                    }
                    dims.push(self.int()?);
                    if dims.len() > 32 {
                        return Err("malformed header: shape has more than 32 dimensions".into());
                    }
                    self.ws();
                    if self.eat(b',') {
                        continue;
                    }
                    self.expect(b')')?;
                    break;
                }
                Ok(Value::Tuple(dims))
            }
            Some(b'[') => {
                let mut depth = 0usize;
                while let Some(&c) = self.s.get(self.i) {
                    self.i += 1;
                    match c {
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(Value::List);
                            }
                        }
                        _ => {}
                    }
                }
                Err("malformed header: unterminated list".into())
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphabetic() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Ok(Value::Bool(true)),
                    b"False" => Ok(Value::Bool(false)),
                    _ => Err(format!(
                        "malformed header: unexpected value at byte {start}"
                    )),
                }
            }
        }
    }

    fn int(&mut self) -> Result<usize, String> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // Python 2 era writers appended 'L' to longs.
        let digits = &self.s[start..self.i];
        self.eat(b'L');
        if digits.is_empty() || digits.len() > 19 {
            return Err(format!("malformed header: bad dimension at byte {start}"));
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("malformed header: bad dimension at byte {start}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(dict: &str) -> Vec<u8> {
        let mut h = dict.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out
    }

    #[test]
    fn parses_numpy_written_header() {
        let b = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (6, 12, 128, 128), }");
        let h = parse_header(&b).unwrap();
        assert_eq!(h.dtype, Stored::Native(DType::F32));
        assert_eq!(h.dims, vec![6, 12, 128, 128]);
        assert_eq!(h.data_offset, 128);
    }

    #[test]
    fn float64_is_read_narrowed() {
        let h = parse_header(&npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
        ))
        .unwrap();
        assert_eq!(
            (h.dtype, h.dtype.read_as(), h.dtype.size()),
            (Stored::F64, DType::F32, 8)
        );
        assert!(dtype_from_descr("<f8")
            .unwrap_err()
            .contains("astype('float32')"));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let cases = [
            (
                "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }",
                "big-endian",
            ),
            (
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
                "big-endian",
            ),
            (
                "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
                "'<i4'",
            ),
            (
                "{'descr': '|O', 'fortran_order': False, 'shape': (2, 2), }",
                "object",
            ),
            (
                "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2), }",
                "'|b1'",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
                "structured",
            ),
            (
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                "Fortran",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }",
                "empty",
            ),
            ("{'descr': '<f4', 'fortran_order': False}", "'shape'"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}",
                "unexpected",
            ),
            (
                "{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (2,)}",
                "malformed",
            ),
        ];
        for (dict, needle) in cases {
            let err = parse_header(&npy(dict)).unwrap_err();
            assert!(err.contains(needle), "{dict}: {err}");
        }
    }

    #[test]
    fn rejects_oversized_and_truncated_headers() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[2, 0]);
        b.extend_from_slice(&(100_000_000u32).to_le_bytes());
        assert!(parse_header(&b).unwrap_err().contains("limit"));
        let full = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }");
        assert!(parse_header(&full[..40]).unwrap_err().contains("truncated"));
    }
}
