//! Where attention comes from. Every source hands out rows of one head as raw little-endian
//! bytes in its own dtype, so the GPU path can copy them straight into mapped buffers and
//! convert on the device; nothing here allocates a whole head.

mod array;
mod demo;
mod diff;
mod file;
pub mod npy;
pub mod qk;
pub mod qk_meta;
pub mod qk_synth;
mod query_rows;
pub mod safetensors;
mod synth;
mod write;

use std::path::Path;

pub use array::{ArraySource, SliceSource};
pub use demo::DemoModel;
pub use diff::{subtract, DiffSource};
pub use file::FileTensor;
pub use query_rows::QueryRows;
pub(crate) use synth::unit;
pub use synth::{encode, Pattern, Planted, Synth, SynthSpec};
pub use write::{check_tensor_path, write_tensor};

use crate::error::{Error, Result};

/// Element type of the stored attention values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// The id the pooling shader switches on (`DTYPE_*` in `shaders/pool.wgsl`).
    pub(crate) fn shader_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
        }
    }

    /// Decodes little-endian values: the CPU twin of `widen` in `shaders/pool.wgsl`, which
    /// turns f16 and bf16 bits into f32 exactly.
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) {
        debug_assert_eq!(bytes.len(), out.len() * self.size());
        match self {
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            DType::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            DType::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }
}

/// Logical shape of an attention tensor: (layers, heads, queries, keys). Lower-rank inputs are
/// promoted with leading ones, so a single head is (1, 1, Q, K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub layers: usize,
    pub heads: usize,
    pub queries: usize,
    pub keys: usize,
}

impl Shape {
    /// Promotes a rank-2..4 shape to (L, H, Q, K).
    pub fn from_dims(dims: &[usize]) -> Option<Shape> {
        let (l, h, q, k) = match *dims {
            [q, k] => (1, 1, q, k),
            [h, q, k] => (1, h, q, k),
            [l, h, q, k] => (l, h, q, k),
            _ => return None,
        };
        Some(Shape {
            layers: l,
            heads: h,
            queries: q,
            keys: k,
        })
    }

    /// What to add to "not 2 to 4 dimensions" for an array of `rank` dimensions: five is what
    /// `torch.stack(outputs.attentions)` makes, (L, batch, H, Q, K), and saying where its
    /// batch axis is spares the user a guess.
    pub fn rank_hint(rank: usize) -> &'static str {
        match rank {
            5 => {
                ": an (L, batch, H, Q, K) stack, as torch.stack(outputs.attentions) makes, \
                 holds a batch axis; take one item, attn[:, b] (or, in Python, pass \
                 outputs.attentions itself: batch=b picks the item)"
            }
            _ => "",
        }
    }

    pub fn head_elements(&self) -> usize {
        self.queries * self.keys
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}, {}, {}, {})",
            self.layers, self.heads, self.queries, self.keys
        )
    }
}

/// A readable attention tensor.
pub trait AttentionSource: Send + Sync {
    /// Name used in messages: the file path, or a description for synthetic sources.
    fn name(&self) -> &str;
    fn shape(&self) -> Shape;
    fn dtype(&self) -> DType;
    /// Copies rows `row_start..` of head (`layer`, `head`) (0-based) into `dst`, whose length
    /// is a whole number of rows (`keys * dtype.size()` bytes each).
    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()>;

    /// Where the causal diagonal lies: key `k` is above it in row `q` when `k > q + diagonal`.
    /// Bottom-right aligned by default (the last query sees every key), which is right for
    /// full heads and for the last rows of one (a KV-cache suffix).
    fn diagonal(&self) -> i64 {
        let s = self.shape();
        s.keys as i64 - s.queries as i64
    }

    /// The index of row 0 among the input's query rows: `A` for attention recomputed for a
    /// `--queries A..B` slice, 0 for a file. Index ticks on the query axis and `argmax` name rows
    /// by it, as the user does.
    fn first_query(&self) -> usize {
        0
    }

    /// Attention defined by queries and keys rather than stored: the GPU engine computes its
    /// rows on the device instead of calling `read_rows`.
    fn as_qk(&self) -> Option<&crate::source::qk::QkSource> {
        None
    }

    /// The difference of two sources: the GPU engine subtracts on the device (`pool::diff`)
    /// instead of calling `read_rows`.
    fn as_diff(&self) -> Option<&DiffSource<'_>> {
        None
    }

    /// What the source's definition says of the keys past the causal diagonal: `Some(true)`
    /// when every row hides them (queries and keys under a causal mask), `Some(false)` when
    /// rows see them (queries and keys without one), `None` when only the values can tell
    /// (stored attention). Lets a difference settle `--causal auto` from its inputs without
    /// computing rows of them.
    fn masks_upper(&self) -> Option<bool> {
        None
    }

    /// The 1-based number layer `layer` (an index into this source's layers) is known by: its
    /// position + 1, except where the source holds some of a model's layers and says which (a
    /// capture of `layers=[1, 4, 5]` shows and selects them as layers 2, 5 and 6).
    fn layer_number(&self, layer: usize) -> usize {
        layer + 1
    }

    /// Every layer's [`AttentionSource::layer_number`], in order: what the plan selects and
    /// labels by, what `info` reports, what a difference compares.
    fn layer_numbers(&self) -> Vec<usize> {
        (0..self.shape().layers)
            .map(|l| self.layer_number(l))
            .collect()
    }
}

/// Whether `numbers` ([`AttentionSource::layer_numbers`]) are the positions + 1: the input's
/// own numbering, nothing to say or map.
pub fn numbered_by_position(numbers: &[usize]) -> bool {
    numbers.iter().enumerate().all(|(i, &n)| n == i + 1)
}

/// A borrowed source is a source: what lets a caller pair sources it keeps (a `DiffSource` of a
/// file and of Q/K recomputed on the GPU) without giving them up.
impl<T: AttentionSource + ?Sized> AttentionSource for &T {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn shape(&self) -> Shape {
        (**self).shape()
    }

    fn dtype(&self) -> DType {
        (**self).dtype()
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        (**self).read_rows(layer, head, row_start, dst)
    }

    fn diagonal(&self) -> i64 {
        (**self).diagonal()
    }

    fn first_query(&self) -> usize {
        (**self).first_query()
    }

    fn as_qk(&self) -> Option<&crate::source::qk::QkSource> {
        (**self).as_qk()
    }

    fn as_diff(&self) -> Option<&DiffSource<'_>> {
        (**self).as_diff()
    }

    fn masks_upper(&self) -> Option<bool> {
        (**self).masks_upper()
    }

    fn layer_number(&self, layer: usize) -> usize {
        (**self).layer_number(layer)
    }
}

/// Whether `bytes`, little-endian values of `size` bytes (4: f32; 2: f16 or bf16), hold one
/// that is not ±0 (NaN included): the sign bit shifted out, every other bit counts.
pub fn any_nonzero(bytes: &[u8], size: usize) -> bool {
    match size {
        4 => bytes
            .chunks_exact(4)
            .any(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) << 1 != 0),
        _ => bytes
            .chunks_exact(2)
            .any(|h| u16::from_le_bytes([h[0], h[1]]) << 1 != 0),
    }
}

/// Checks a `read_rows` request against `shape` and returns the byte offset of its first row
/// inside the head, so every source rejects out-of-range reads the same way.
pub(crate) fn row_range(
    name: &str,
    shape: Shape,
    dtype: DType,
    layer: usize,
    head: usize,
    row_start: usize,
    len: usize,
) -> Result<usize> {
    let row_bytes = shape.keys * dtype.size();
    let rows = len / row_bytes;
    if layer >= shape.layers
        || head >= shape.heads
        || !len.is_multiple_of(row_bytes)
        || row_start + rows > shape.queries
    {
        return Err(Error::BadOption(format!(
            "{name}: read of layer {layer} head {head} rows {row_start}..{} outside {shape}",
            row_start + rows
        )));
    }
    Ok((head * shape.queries + row_start) * row_bytes)
}

/// An element type as a file stores it: one the engine reads as it is, or float64 (numpy's
/// default, what `np.save` of a numpy softmax writes), which the reader narrows to the f32
/// the engine takes as the rows are read. Nothing past the reader sees float64: the GPU
/// kernels and the CPU twin read f32, rounded once as `arr.astype(np.float32)` rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Native(DType),
    F64,
}

impl Stored {
    /// Bytes an element takes in the file.
    pub fn size(self) -> usize {
        match self {
            Stored::Native(d) => d.size(),
            Stored::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stored::Native(d) => d.name(),
            Stored::F64 => "f64",
        }
    }

    /// `f64`, or a [`DType`]'s name.
    pub fn from_name(name: &str) -> Option<Stored> {
        match name {
            "f64" => Some(Stored::F64),
            n => DType::from_name(n).map(Stored::Native),
        }
    }

    /// The element type the reader hands on.
    pub fn read_as(self) -> DType {
        match self {
            Stored::Native(d) => d,
            Stored::F64 => DType::F32,
        }
    }
}

/// Where a validated tensor lives in its file: what the parsers return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorLayout {
    pub shape: Shape,
    pub dtype: Stored,
    /// Byte offset of each layer's first element.
    pub layer_offsets: Vec<u64>,
}

/// Options that pick what to read from a file.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Tensor name inside a `.safetensors` file.
    pub tensor: Option<String>,
}

/// The tensor formats `open` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Npy,
    Safetensors,
}

/// What `path` holds: by its extension, else by its first bytes (`\x93NUMPY`, or a
/// safetensors header: a length that fits the file, then `{`), so that a tensor under another
/// name (`attn.bin`, a download without its extension) is read as what it is. Only regular
/// files: attnviz reads its input in place, at offsets, which a pipe or the standard input
/// (`-`) cannot give.
pub fn file_kind(path: &Path) -> Result<FileKind> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => return Ok(FileKind::Npy),
        Some("safetensors") => return Ok(FileKind::Safetensors),
        _ => {}
    }
    // (the type before opening: opening a FIFO waits for a writer)
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new("-") => {
            return Err(Error::bad_input(
                path,
                "the standard input cannot be read in place: write the tensor to a file and \
                 give its path",
            ))
        }
        meta => meta.map_err(|e| Error::io(path, e))?,
    };
    if meta.is_dir() {
        return Err(Error::bad_input(path, "a folder, not a tensor file"));
    }
    if !meta.is_file() {
        return Err(Error::bad_input(
            path,
            "not a regular file (a pipe?): attnviz reads its input in place, at offsets; write \
             the tensor to a file and give its path",
        ));
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 9];
    let n = std::io::Read::read(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
    let header_len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    if n >= 6 && head.starts_with(npy::MAGIC) {
        Ok(FileKind::Npy)
    } else if n == 9 && head[8] == b'{' && header_len.saturating_add(8) <= meta.len() {
        Ok(FileKind::Safetensors)
    } else {
        Err(Error::bad_input(
            path,
            "unknown file type: neither .npy nor .safetensors, by name or by content (a raw \
             dump is read with --shape and --dtype)",
        ))
    }
}

/// Opens a `.npy` or `.safetensors` file ([`file_kind`]: by extension, else by content).
pub fn open(path: &Path, options: &OpenOptions) -> Result<FileTensor> {
    match file_kind(path)? {
        FileKind::Npy => {
            if options.tensor.is_some() {
                return Err(Error::bad_input(
                    path,
                    "--tensor applies to .safetensors files only",
                ));
            }
            npy::open(path)
        }
        FileKind::Safetensors => safetensors::open(path, options.tensor.as_deref()),
    }
}

/// Opens a raw dump of little-endian values with an explicit shape (rank 2 to 4) and dtype.
pub fn open_raw(path: &Path, dims: &[usize], dtype: Stored) -> Result<FileTensor> {
    let shape = Shape::from_dims(dims)
        .ok_or_else(|| Error::BadOption(format!("--shape {dims:?}: expected 2 to 4 dimensions")))?;
    if dims.contains(&0) {
        return Err(Error::BadOption(format!(
            "--shape {dims:?} has an empty dimension"
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let expected = npy::data_bytes(dims, dtype.size())
        .ok_or_else(|| Error::BadOption(format!("--shape {dims:?} overflows")))?;
    if len != expected {
        return Err(Error::bad_input(
            path,
            format!(
                "file is {len} bytes but --shape {dims:?} --dtype {} needs {expected}",
                dtype.name()
            ),
        ));
    }
    let layer_bytes = (shape.heads * shape.head_elements() * dtype.size()) as u64;
    let layer_offsets = (0..shape.layers as u64).map(|l| l * layer_bytes).collect();
    Ok(FileTensor::new(
        path,
        file,
        TensorLayout {
            shape,
            dtype,
            layer_offsets,
        },
    ))
}

/// Parses `L,H,Q,K` (or fewer dimensions) as given to `--shape`.
pub fn parse_shape(spec: &str) -> Result<Vec<usize>> {
    let dims: Option<Vec<usize>> = spec.split(',').map(|d| d.trim().parse().ok()).collect();
    match dims {
        Some(d) if (2..=4).contains(&d.len()) && !d.contains(&0) => Ok(d),
        _ => Err(Error::BadOption(format!(
            "--shape {spec}: expected 2 to 4 positive integers such as 8,8,2048,2048"
        ))),
    }
}

impl DType {
    pub fn from_name(name: &str) -> Option<DType> {
        [DType::F32, DType::F16, DType::BF16]
            .into_iter()
            .find(|d| d.name() == name)
    }
}
