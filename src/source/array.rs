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
