//! Writing a source out as `.npy`, `.safetensors` or raw bytes, a row block at a time (memory
//! bounded by the block, not the tensor), replacing the target atomically.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use super::{AttentionSource, DType};
use crate::error::{Error, Result};
use crate::files::write_atomic;

const BLOCK_BYTES: usize = 16 << 20;

/// Extensions of figure formats, which a tensor is never written under.
const FIGURE_EXTENSIONS: [&str; 11] = [
    "png", "svg", "jpg", "jpeg", "gif", "webp", "tif", "tiff", "bmp", "pdf", "eps",
];

/// Fails, before any work, where `path` is not writable or names a figure format (`.png`,
/// `.svg`, `.jpg`, …): [`write_tensor`] writes raw values under any name but `.npy` and
/// `.safetensors`, and raw values under an image's name lie about what the file holds (most
/// likely, `render`'s `-o` given to `synth` or `attention`).
pub fn check_tensor_path(path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if let Some(ext) = ext.filter(|e| FIGURE_EXTENSIONS.contains(&e.as_str())) {
        return Err(Error::BadInput {
            path: path.to_path_buf(),
            message: format!(
                "a tensor is written as .npy, .safetensors or raw values, not as .{ext} (figures \
                 come from render)"
            ),
        });
    }
    crate::files::check_writable(path)
}

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
    // Blocks are read on a thread of their own while the last one is written: a source computed
    // on the GPU (attention from Q and K) works while the kernel copies the previous block into
    // the file, instead of each waiting for the other. Two blocks circulate between the two
    // threads, so memory stays two blocks and nothing is allocated per block.
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<(Vec<u8>, usize)>>(1);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..2 {
        free_tx
            .send(vec![0u8; block_rows * row_bytes])
            .expect("the receiver is alive");
    }
    write_atomic(path, move |w| {
        w.write_all(&header)?;
        std::thread::scope(move |scope| {
            scope.spawn(move || {
                for l in 0..s.layers {
                    for h in 0..s.heads {
                        let mut row = 0;
                        while row < s.queries {
                            // (the writer stopped: nothing more to do)
                            let Ok(mut block) = free_rx.recv() else {
                                return;
                            };
                            let n = block_rows.min(s.queries - row);
                            let len = n * row_bytes;
                            let read = source.read_rows(l, h, row, &mut block[..len]);
                            let failed = read.is_err();
                            if full_tx.send(read.map(|()| (block, len))).is_err() || failed {
                                return;
                            }
                            row += n;
                        }
                    }
                }
            });
            // (returning drops `full_rx` and `free_tx`, which stops the reader if it is still
            // going, before the scope waits for it)
            let mut written = 0u64;
            for read in full_rx {
                let (block, len) = read.map_err(std::io::Error::other)?;
                w.write_all(&block[..len])?;
                written += len as u64;
                progress(written, total);
                let _ = free_tx.send(block);
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Shape;

    /// Rows of ones, 4 MiB per head; head `fail` fails to read.
    struct Failing {
        fail: usize,
    }

    impl AttentionSource for Failing {
        fn name(&self) -> &str {
            "failing"
        }

        fn shape(&self) -> Shape {
            Shape {
                layers: 1,
                heads: 8,
                queries: 1024,
                keys: 1024,
            }
        }

        fn dtype(&self) -> DType {
            DType::F32
        }

        fn read_rows(&self, _: usize, head: usize, _: usize, dst: &mut [u8]) -> Result<()> {
            if head == self.fail {
                return Err(Error::BadOption(format!("head {head} is unreadable")));
            }
            for c in dst.chunks_exact_mut(4) {
                c.copy_from_slice(&1f32.to_le_bytes());
            }
            Ok(())
        }
    }

    /// Blocks come from a reading thread: every block lands in order, and a read that fails
    /// after several blocks were written leaves no file, and says why.
    #[test]
    fn blocks_land_in_order_and_a_failed_read_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.raw");
        let seen = std::sync::Mutex::new(Vec::new());
        write_tensor(&Failing { fail: 99 }, &path, &|w, t| {
            seen.lock().unwrap().push((w, t))
        })
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 8 << 22);
        assert!(bytes.chunks(4).all(|c| c == 1f32.to_le_bytes()));
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.last(), Some(&(8 << 22, 8 << 22)));
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));

        let path = dir.path().join("failed.npy");
        let err = write_tensor(&Failing { fail: 6 }, &path, &|_, _| {}).unwrap_err();
        assert!(err.to_string().contains("head 6 is unreadable"), "{err}");
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
