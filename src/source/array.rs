//! Attention already in memory (tests, library callers, bindings): raw little-endian bytes plus
//! shape and dtype, read by the same paths as files.

use super::{AttentionSource, DType, Shape};
use crate::error::{Error, Result};

pub struct ArraySource {
    name: String,
    shape: Shape,
    dtype: DType,
    bytes: Vec<u8>,
}

impl ArraySource {
    /// `bytes` must hold exactly `shape` elements of `dtype`, little-endian, C order.
    pub fn new(name: &str, shape: Shape, dtype: DType, bytes: Vec<u8>) -> Result<Self> {
        let expected = shape.layers * shape.heads * shape.head_elements() * dtype.size();
        if bytes.len() != expected || expected == 0 {
            return Err(Error::BadOption(format!(
                "{name}: {} bytes do not hold a {shape} {} tensor ({expected} bytes)",
                bytes.len(),
                dtype.name()
            )));
        }
        Ok(ArraySource {
            name: name.to_string(),
            shape,
            dtype,
            bytes,
        })
    }

    /// From an (L, H, Q, K) array of f32.
    pub fn from_f32(name: &str, a: &ndarray::Array4<f32>) -> Self {
        let (l, h, q, k) = a.dim();
        let bytes = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        let shape = Shape {
            layers: l,
            heads: h,
            queries: q,
            keys: k,
        };
        ArraySource::new(name, shape, DType::F32, bytes).expect("array size matches its shape")
    }

    /// From an (L, H, Q, K) array, stored as f16 or bf16 (rounded to nearest).
    pub fn from_f32_as(name: &str, a: &ndarray::Array4<f32>, dtype: DType) -> Self {
        let (l, h, q, k) = a.dim();
        let bytes = match dtype {
            DType::F32 => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F16 => a
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            DType::BF16 => a
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        };
        let shape = Shape {
            layers: l,
            heads: h,
            queries: q,
            keys: k,
        };
        ArraySource::new(name, shape, dtype, bytes).expect("array size matches its shape")
    }
}

impl AttentionSource for ArraySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn shape(&self) -> Shape {
        self.shape
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let within = super::row_range(
            &self.name,
            self.shape,
            self.dtype,
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let start =
            layer * self.shape.heads * self.shape.head_elements() * self.dtype.size() + within;
        dst.copy_from_slice(&self.bytes[start..start + dst.len()]);
        Ok(())
    }
}

/// Attention borrowed from memory the caller owns, one slice per layer, each an (H, Q, K) block
/// in C order: a stacked (L, H, Q, K) array split at its layer boundaries, or the per-layer
/// tensors of a HuggingFace `outputs.attentions` read where they are, never stacked into a copy.
pub struct SliceSource<'a> {
    name: String,
    shape: Shape,
    dtype: DType,
    layers: Vec<&'a [u8]>,
}

impl<'a> SliceSource<'a> {
    /// `layers` holds `shape.layers` slices of exactly one layer's bytes each, little-endian.
    pub fn new(name: &str, shape: Shape, dtype: DType, layers: Vec<&'a [u8]>) -> Result<Self> {
        let layer_bytes = shape.heads * shape.head_elements() * dtype.size();
        if layers.len() != shape.layers
            || layer_bytes == 0
            || layers.iter().any(|l| l.len() != layer_bytes)
        {
            return Err(Error::BadOption(format!(
                "{name}: {} slices do not hold the layers of a {shape} {} tensor ({layer_bytes} bytes each)",
                layers.len(),
                dtype.name()
            )));
        }
        Ok(SliceSource {
            name: name.to_string(),
            shape,
            dtype,
            layers,
        })
    }

    /// Over one contiguous (L, H, Q, K) buffer.
    pub fn contiguous(name: &str, shape: Shape, dtype: DType, bytes: &'a [u8]) -> Result<Self> {
        let layer_bytes = shape.heads * shape.head_elements() * dtype.size();
        if layer_bytes == 0 || bytes.len() != layer_bytes * shape.layers {
            return Err(Error::BadOption(format!(
                "{name}: {} bytes do not hold a {shape} {} tensor",
                bytes.len(),
                dtype.name()
            )));
        }
        SliceSource::new(name, shape, dtype, bytes.chunks(layer_bytes).collect())
    }

    /// The memory each layer is read from (tests check it is the caller's, not a copy).
    pub fn layer_bytes(&self) -> &[&'a [u8]] {
        &self.layers
    }
}

impl AttentionSource for SliceSource<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn shape(&self) -> Shape {
        self.shape
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let start = super::row_range(
            &self.name,
            self.shape,
            self.dtype,
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        dst.copy_from_slice(&self.layers[layer][start..start + dst.len()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_like_one_array() {
        let shape = Shape::from_dims(&[2, 3, 4, 5]).unwrap();
        let a = ndarray::Array4::from_shape_fn((2, 3, 4, 5), |(l, h, q, k)| {
            (l * 1000 + h * 100 + q * 10 + k) as f32
        });
        let owned = ArraySource::from_f32("a", &a);
        let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (l0, l1) = bytes.split_at(bytes.len() / 2);
        let split = SliceSource::new("s", shape, DType::F32, vec![l0, l1]).unwrap();
        let whole = SliceSource::contiguous("c", shape, DType::F32, &bytes).unwrap();
        for (l, h, r) in [(0, 0, 0), (1, 2, 1), (1, 1, 3)] {
            let mut want = vec![0u8; 5 * 4];
            owned.read_rows(l, h, r, &mut want).unwrap();
            for src in [&split, &whole] {
                let mut got = vec![0u8; 5 * 4];
                src.read_rows(l, h, r, &mut got).unwrap();
                assert_eq!(got, want);
            }
        }
        assert!(SliceSource::new("s", shape, DType::F32, vec![l0]).is_err());
        assert!(SliceSource::contiguous("c", shape, DType::F32, l0).is_err());
    }
}
