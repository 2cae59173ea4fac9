//! `.safetensors` reader: the header is parsed and validated by the `safetensors` crate (offsets
//! contiguous, sizes matching shape × dtype, buffer length exact); this module only picks the
//! tensor(s) that hold attention and maps them to (L, H, Q, K).

use std::fs::File;
use std::path::Path;

use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use safetensors::{SafeTensorError, SafeTensors};

use super::qk_meta::{CaptureMeta, METADATA_KEY};
use super::{DType, FileTensor, Shape, Stored, TensorLayout};
use crate::error::{Error, Result};

/// Shape, dtype and each layer's byte offset in the data section.
type Selected = (Shape, Stored, Vec<usize>);

/// Largest JSON header we parse; real attention files have a few KiB.
const MAX_HEADER_LEN: u64 = 16 << 20;

pub(crate) fn open(path: &Path, tensor: Option<&str>) -> Result<FileTensor> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // The declared header length is checked against the file before anything is mapped.
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    let short = std::io::Read::read_exact(&mut &file, &mut len_bytes).is_err();
    if short {
        return Err(Error::bad_input(
            path,
            format!("file is {file_len} bytes: too short for a .safetensors header"),
        ));
    }
    check_header_len(u64::from_le_bytes(len_bytes), file_len)
        .map_err(|m| Error::bad_input(path, m))?;
    // SAFETY: read-only map; see FileTensor for the truncation caveat. Only the pages of the
    // header are touched before the offsets are validated.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let layout = parse(&map, tensor).map_err(|m| Error::bad_input(path, m))?;
    drop(map);
    Ok(FileTensor::new(path, file, layout))
}

/// Whether `path` is a `.safetensors` file: named so (in any case; what the Q/K writer goes
/// by for a file it is about to write), else by its content ([`super::file_kind`]).
pub fn is_safetensors(path: &Path) -> bool {
    super::file_kind(path).is_ok_and(|k| k == super::FileKind::Safetensors)
}

/// Whether `path` is a Q/K capture: a `.safetensors` file holding tensors `q` and `k`, as
/// `attnviz.capture` and `attnviz synth-qk` write them. `render`, `heads`, `view`, `diff` and
/// `attnviz.Viewer` recompute its attention when given it as their input; `info` describes it.
pub fn is_capture(path: &Path) -> bool {
    let named = |name: &str| {
        let tensor = Some(name.into());
        super::open(path, &super::OpenOptions { tensor }).is_ok()
    };
    is_safetensors(path) && named("q") && named("k")
}

/// The capture metadata (`attnviz.capture`'s JSON, see [`qk_meta`](super::qk_meta)) in the
/// header of the `.safetensors` file at `path`; `None` when the file has none. Only the header
/// is read, after its declared length is checked against the file.
pub fn capture_meta(path: &Path) -> Result<Option<CaptureMeta>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    // SAFETY: read-only map, as in `open`; only the header's pages are touched.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::bad_input(path, m);
    let len = map
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| {
            bad(format!(
                "file is {file_len} bytes: too short for a .safetensors header"
            ))
        })?;
    check_header_len(len, file_len).map_err(bad)?;
    let (_, metadata) = SafeTensors::read_metadata(&map).map_err(|e| bad(invalid(&map, e)))?;
    let Some(json) = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
    else {
        return Ok(None);
    };
    CaptureMeta::parse(json).map(Some).map_err(bad)
}

/// Validates a whole `.safetensors` file and picks its attention tensor(s). The declared header
/// length is checked against the file and a size limit before anything is parsed.
pub fn parse(file: &[u8], tensor: Option<&str>) -> Result<TensorLayout, String> {
    let file_len = file.len() as u64;
    let Some(len_bytes) = file.get(..8) else {
        return Err(format!(
            "file is {file_len} bytes: too short for a .safetensors header"
        ));
    };
    check_header_len(
        u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")),
        file_len,
    )?;
    let (header_len, metadata) = SafeTensors::read_metadata(file).map_err(|e| invalid(file, e))?;
    let data_start = 8 + header_len as u64;
    let (shape, dtype, offsets) = select(&metadata, tensor)?;
    Ok(TensorLayout {
        shape,
        dtype,
        layer_offsets: offsets.into_iter().map(|o| data_start + o as u64).collect(),
    })
}

/// The message for a file the `safetensors` crate refused (its header length already checked
/// by [`check_header_len`]). Where the header parsed but its tensors do not fit their data
/// (a truncated or padded file, a shape that disagrees with its byte range, ranges that
/// overlap or leave gaps), the crate says only which rule failed; [`layout_problem`] names
/// the tensor and the numbers, which is what someone fixing a capture writer needs.
fn invalid(file: &[u8], e: SafeTensorError) -> String {
    let layout = matches!(
        e,
        SafeTensorError::TensorInvalidInfo
            | SafeTensorError::InvalidOffset(_)
            | SafeTensorError::MetadataIncompleteBuffer
            | SafeTensorError::ValidationOverflow
            | SafeTensorError::MisalignedSlice
    );
    if let Some(problem) = layout.then(|| layout_problem(file)).flatten() {
        return format!("invalid safetensors file: {problem}");
    }
    let e = e.to_string();
    // serde lists every known dtype after an unknown one; the name is what matters.
    let e = e.split(", expected one of").next().unwrap_or(&e);
    format!("invalid safetensors file: {e}")
}

/// The first tensor whose data does not lie where the crate's rules want it, in the order of
/// the data section: each tensor's byte range as long as its shape and dtype make it, each
/// starting where the one before it ends, and the last ending at the end of the file. `None`
/// when the header does not parse into tensors (the crate's message then stands). The header
/// is at most [`MAX_HEADER_LEN`] bytes and inside the file (checked before the crate ran).
fn layout_problem(file: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(file.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(file.get(8..8usize.checked_add(n)?)?).ok()?;
    let mut tensors: Vec<(String, TensorInfo)> = header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, v)| serde_json::from_value(v).ok().map(|info| (name, info)))
        .collect::<Option<_>>()?;
    tensors.sort_by_key(|(_, info)| info.data_offsets);
    let data = file.len() - 8 - n;
    let mut end = 0usize;
    let mut before: Option<&str> = None;
    for (name, info) in &tensors {
        let (start, stop) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |b, &d| b.checked_mul(d));
        let bytes = match bits {
            None => {
                return Some(format!(
                    "tensor `{name}`: shape {:?} of {:?} overflows a byte count",
                    info.shape, info.dtype
                ))
            }
            Some(bits) if bits % 8 != 0 => {
                return Some(format!(
                    "tensor `{name}`: shape {:?} of {:?} is not a whole number of bytes",
                    info.shape, info.dtype
                ))
            }
            Some(bits) => bits / 8,
        };
        if stop < start || stop - start != bytes {
            return Some(format!(
                "tensor `{name}`: shape {:?} of {:?} is {bytes} bytes, but its data_offsets \
                 [{start}, {stop}] hold {}",
                info.shape,
                info.dtype,
                stop.saturating_sub(start)
            ));
        }
        if start != end {
            let after = before.map_or("the data section's start".to_string(), |b| {
                format!("the end of tensor `{b}`")
            });
            let how = if start < end {
                "overlaps"
            } else {
                "leaves a gap after"
            };
            return Some(format!(
                "tensor `{name}`'s data starts at byte {start} of the data section and {how} \
                 {after} (byte {end})"
            ));
        }
        end = stop;
        before = Some(name);
    }
    match end.cmp(&data) {
        std::cmp::Ordering::Greater => Some(format!(
            "its tensors need {end} bytes of data after the header, but the file holds {data}: \
             truncated ({} bytes missing)",
            end - data
        )),
        std::cmp::Ordering::Less => Some(format!(
            "its tensors need {end} bytes of data after the header, but the file holds {data}: \
             {} bytes that no tensor names at its end",
            data - end
        )),
        std::cmp::Ordering::Equal => None,
    }
}

fn check_header_len(n: u64, file_len: u64) -> Result<(), String> {
    if n > MAX_HEADER_LEN || n.saturating_add(8) > file_len {
        return Err(format!(
            "header length {n} does not fit the {file_len}-byte file (limit {MAX_HEADER_LEN})"
        ));
    }
    Ok(())
}

fn dtype_of(name: &str, info: &TensorInfo) -> Result<Stored, String> {
    match info.dtype {
        Dtype::F32 => Ok(Stored::Native(DType::F32)),
        Dtype::F16 => Ok(Stored::Native(DType::F16)),
        Dtype::BF16 => Ok(Stored::Native(DType::BF16)),
        Dtype::F64 => Ok(Stored::F64),
        other => Err(format!(
            "tensor '{name}' has dtype {other:?} (expected F32, F16, BF16 or F64)"
        )),
    }
}

/// Chooses the tensor(s) and returns shape, dtype and each layer's offset in the data section.
fn select(meta: &Metadata, wanted: Option<&str>) -> Result<Selected, String> {
    let tensors = meta.tensors();
    if let Some(name) = wanted {
        let info = tensors
            .get(name)
            .ok_or_else(|| format!("no tensor named '{name}' (it has: {})", list_names(meta)))?;
        return single(name, info);
    }
    if tensors.len() == 1 {
        let (name, info) = tensors.iter().next().expect("one tensor");
        return single(name, info);
    }
    if tensors.is_empty() {
        return Err("file holds no tensors".into());
    }
    if tensors.contains_key("q") && tensors.contains_key("k") {
        // A capture (`attnviz.capture`, `attnviz synth-qk`): picking q or k with --tensor would
        // draw the queries themselves as if they were attention.
        return Err(
            "file holds queries and keys (tensors q and k), not attention: its attention is \
                    recomputed by render, view, heads and diff given it as input, and by \
                    attention --q FILE"
                .into(),
        );
    }
    stacked_layers(meta).ok_or_else(|| {
        format!(
            "file holds {} tensors ({}); pick one with --tensor NAME",
            tensors.len(),
            list_names(meta)
        )
    })?
}

fn single(name: &str, info: &TensorInfo) -> Result<Selected, String> {
    let dtype = dtype_of(name, info)?;
    let shape = shape_of(name, &info.shape)?;
    let layer_bytes = shape.heads * shape.head_elements() * dtype.size();
    let offsets = (0..shape.layers)
        .map(|l| info.data_offsets.0 + l * layer_bytes)
        .collect();
    Ok((shape, dtype, offsets))
}

fn shape_of(name: &str, dims: &[usize]) -> Result<Shape, String> {
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(format!(
            "tensor '{name}': dimension {i} of shape {dims:?} is empty"
        ));
    }
    Shape::from_dims(dims).ok_or_else(|| {
        format!(
            "tensor '{name}' has shape {dims:?}: expected 2 to 4 dimensions ((Q,K), (H,Q,K) or (L,H,Q,K)){}",
            Shape::rank_hint(dims.len())
        )
    })
}

/// HuggingFace-style per-layer tensors `prefix.0`, `prefix.1`, …: all with one prefix, indices
/// 0..n, the same dtype and a shape of (H,Q,K) or (1,H,Q,K). `None` when the file is not laid
/// out like that.
fn stacked_layers(meta: &Metadata) -> Option<Result<Selected, String>> {
    let tensors = meta.tensors();
    let mut layers: Vec<(usize, &str, &TensorInfo)> = Vec::new();
    let mut prefix: Option<&str> = None;
    for (name, info) in tensors.iter() {
        let (head, index) = name.rsplit_once('.')?;
        let index: usize = index.parse().ok()?;
        if prefix.is_some_and(|p| p != head) {
            return None;
        }
        prefix = Some(head);
        layers.push((index, name, info));
    }
    layers.sort_by_key(|l| l.0);
    if layers.iter().enumerate().any(|(i, l)| l.0 != i) {
        return Some(Err(format!(
            "per-layer tensors '{}.N' do not number 0..{}",
            prefix.unwrap_or(""),
            layers.len()
        )));
    }
    let result = (|| {
        let (_, first_name, first) = layers[0];
        let dtype = dtype_of(first_name, first)?;
        let mut dims = first.shape.clone();
        if dims.len() == 4 && dims[0] == 1 {
            dims.remove(0);
        }
        if dims.len() != 3 {
            return Err(format!(
                "per-layer tensor '{first_name}' has shape {:?}: expected (H,Q,K) or (1,H,Q,K)",
                first.shape
            ));
        }
        let mut offsets = Vec::with_capacity(layers.len());
        for &(_, name, info) in &layers {
            if info.shape != first.shape || info.dtype != first.dtype {
                return Err(format!(
                    "per-layer tensor '{name}' has {:?} {:?}, unlike '{first_name}' ({:?} {:?})",
                    info.dtype, info.shape, first.dtype, first.shape
                ));
            }
            offsets.push(info.data_offsets.0);
        }
        let head = shape_of(first_name, &dims)?;
        Ok((
            Shape {
                layers: layers.len(),
                ..head
            },
            dtype,
            offsets,
        ))
    })();
    Some(result)
}

fn list_names(meta: &Metadata) -> String {
    let mut names: Vec<String> = meta.tensors().into_keys().collect();
    names.sort();
    if names.len() > 8 {
        let more = names.len() - 8;
        names.truncate(8);
        names.push(format!("… {more} more"));
    }
    names.join(", ")
}
