//! Writing a source out as `.npy`, `.safetensors` or raw bytes, a row block at a time (memory
//! bounded by the block, not the tensor), replacing the target atomically.

use std::io::Write;
use std::path::Path;

use super::{AttentionSource, DType};
use crate::error::{Error, Result};
use crate::files::write_atomic;

const BLOCK_BYTES: usize = 16 << 20;

/// Writes every head of `source` to `path`; the format follows the extension (`.npy`,
/// `.safetensors`, anything else: raw little-endian values). `progress` hears bytes written.
pub fn write_tensor(
    source: &dyn AttentionSource,
    path: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<()> {
    let s = source.shape();
    let dtype = source.dtype();
    let total = (s.layers * s.heads * s.head_elements() * dtype.size()) as u64;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let dims = format!("{}, {}, {}, {}", s.layers, s.heads, s.queries, s.keys);
    let header: Vec<u8> = match ext.as_deref() {
        Some("npy") => {
            let descr = match dtype {
                DType::F32 => "<f4",
                DType::F16 => "<f2",
                DType::BF16 => {
                    return Err(Error::BadOption(
                        "numpy has no bfloat16: write bf16 as .safetensors or raw".into(),
                    ))
                }
            };
            let mut dict =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
            while (10 + dict.len() + 1) % 64 != 0 {
                dict.push(' ');
            }
            dict.push('\n');
            let mut h = b"\x93NUMPY\x01\x00".to_vec();
            h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            h.extend_from_slice(dict.as_bytes());
            h
        }
        Some("safetensors") => {
            let name = match dtype {
                DType::F32 => "F32",
                DType::F16 => "F16",
                DType::BF16 => "BF16",
            };
            let mut json = format!(
                "{{\"attention\":{{\"dtype\":\"{name}\",\"shape\":[{}],\"data_offsets\":[0,{total}]}}}}",
                dims.replace(' ', "")
            );
            while json.len() % 8 != 0 {
                json.push(' ');
            }
            let mut h = (json.len() as u64).to_le_bytes().to_vec();
            h.extend_from_slice(json.as_bytes());
            h
        }
        _ => Vec::new(),
    };
    let row_bytes = s.keys * dtype.size();
    let block_rows = (BLOCK_BYTES / row_bytes).clamp(1, s.queries);
    let mut block = vec![0u8; block_rows * row_bytes];
    write_atomic(path, |w| {
        w.write_all(&header)?;
        let mut written = 0u64;
        for l in 0..s.layers {
            for h in 0..s.heads {
                let mut row = 0;
                while row < s.queries {
                    let n = block_rows.min(s.queries - row);
                    let bytes = &mut block[..n * row_bytes];
                    source
                        .read_rows(l, h, row, bytes)
                        .map_err(std::io::Error::other)?;
                    w.write_all(bytes)?;
                    written += bytes.len() as u64;
                    progress(written, total);
                    row += n;
                }
            }
        }
        Ok(())
    })
}
