//! The difference of two inputs of one shape, `A − B`, entry by entry: what `attnviz diff`
//! draws. As a source it hands out the differences as f32 rows (the CPU renderer's path and the
//! CPU twin of the GPU's subtraction); the GPU engine reads [`DiffSource::a`] and
//! [`DiffSource::b`] itself and subtracts on the device (`pool::diff`), so both inputs are
//! read once, block by block, and neither is ever held whole.

use crate::error::{Error, Result};
use crate::source::{self, numbered_by_position, row_range, AttentionSource, DType, Shape};

/// `A − B` of two sources of one shape (each in its own dtype). The sources may borrow (numpy
/// arrays read in place by the Python bindings).
pub struct DiffSource<'s> {
    a: Box<dyn AttentionSource + 's>,
    b: Box<dyn AttentionSource + 's>,
    name: String,
    /// The number each layer is shown by ([`AttentionSource::layer_number`]): the side's that
    /// numbers its layers as a model's (a capture of some layers), else the positions + 1.
    numbers: Vec<usize>,
}

/// `numbers` as a list: `1, 4, 5`.
fn listed(numbers: &[usize]) -> String {
    let items: Vec<String> = numbers.iter().map(usize::to_string).collect();
    items.join(", ")
}

impl<'s> DiffSource<'s> {
    /// Pairs two sources; their shapes must be equal ([`Error::ShapeMismatch`] names both), and
    /// where both number their layers as a model's (captures of some layers), by the same
    /// numbers: a difference subtracts each layer from the same layer, and B's layers 2, 3, 6
    /// from A's 1, 4, 5 would be drawn labelled as one of them. The figure shows the layers by
    /// the side's numbers that has them (a capture's against a file's positions).
    pub fn new(
        a: Box<dyn AttentionSource + 's>,
        b: Box<dyn AttentionSource + 's>,
    ) -> Result<DiffSource<'s>> {
        let (sa, sb) = (a.shape(), b.shape());
        if sa != sb {
            return Err(Error::ShapeMismatch {
                a: a.name().to_string(),
                a_shape: sa.to_string(),
                b: b.name().to_string(),
                b_shape: sb.to_string(),
            });
        }
        let (na, nb) = (a.layer_numbers(), b.layer_numbers());
        let (a_own, b_own) = (!numbered_by_position(&na), !numbered_by_position(&nb));
        if na != nb && a_own && b_own {
            return Err(Error::BadOption(format!(
                "{} holds the model's layers {} and {} its layers {}: a difference subtracts each \
                 layer from the same layer; capture the same layers",
                a.name(),
                listed(&na),
                b.name(),
                listed(&nb)
            )));
        }
        let numbers = if a_own { na } else { nb };
        let name = format!("{} − {}", a.name(), b.name());
        Ok(DiffSource {
            a,
            b,
            name,
            numbers,
        })
    }

    pub fn a(&self) -> &dyn AttentionSource {
        self.a.as_ref()
    }

    pub fn b(&self) -> &dyn AttentionSource {
        self.b.as_ref()
    }

    /// Whether A or B shows a key past the causal diagonal (`k > q + diagonal`) in any of
    /// `cells`: then `--causal auto` draws the difference unmasked, whatever its values. Decided
    /// from the difference alone, heads equal in A and B (a model against itself, layers a
    /// fine-tune froze) are 0 above the diagonal and were drawn as causal triangles, though
    /// neither input is causal. A source's definition answers where it can
    /// ([`AttentionSource::masks_upper`]); stored attention is read at row 0 of each head, where
    /// attention that is not causal shows it (each query's neighbours). The GPU and the CPU
    /// renderer both ask here.
    pub fn inputs_show_upper(&self, cells: &[(usize, usize)], diagonal: i64) -> Result<bool> {
        for src in [self.a.as_ref(), self.b.as_ref()] {
            if shows_upper(src, cells, diagonal)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// [`DiffSource::inputs_show_upper`] for one input.
fn shows_upper(src: &dyn AttentionSource, cells: &[(usize, usize)], diagonal: i64) -> Result<bool> {
    if let Some(masked) = src.masks_upper() {
        return Ok(!masked);
    }
    let keys = src.shape().keys;
    let first = (diagonal + 1).clamp(0, keys as i64) as usize;
    if first == keys {
        return Ok(false);
    }
    let size = src.dtype().size();
    let mut row = vec![0u8; keys * size];
    for &(layer, head) in cells {
        src.read_rows(layer, head, 0, &mut row)?;
        if source::any_nonzero(&row[first * size..], size) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `a − b` in f32, element by element, as IEEE arithmetic gives it (a non-finite operand gives
/// a non-finite difference, drawn as bad): the CPU twin of `shaders/diff.wgsl`.
pub fn subtract(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = if x.is_finite() && y.is_finite() {
            x - y
        } else {
            f32::NAN
        };
    }
}

impl AttentionSource for DiffSource<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn shape(&self) -> Shape {
        self.a.shape()
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let shape = self.shape();
        row_range(
            &self.name,
            shape,
            DType::F32,
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let n = dst.len() / 4;
        let read = |s: &dyn AttentionSource| -> Result<Vec<f32>> {
            let mut raw = vec![0u8; n * s.dtype().size()];
            s.read_rows(layer, head, row_start, &mut raw)?;
            let mut v = vec![0f32; n];
            s.dtype().decode(&raw, &mut v);
            Ok(v)
        };
        let (a, b) = (read(self.a.as_ref())?, read(self.b.as_ref())?);
        let mut d = vec![0f32; n];
        subtract(&a, &b, &mut d);
        for (o, v) in dst.chunks_exact_mut(4).zip(d) {
            o.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    fn diagonal(&self) -> i64 {
        self.a.diagonal()
    }

    fn first_query(&self) -> usize {
        self.a.first_query()
    }

    fn as_diff(&self) -> Option<&DiffSource<'_>> {
        Some(self)
    }

    fn layer_number(&self, layer: usize) -> usize {
        self.numbers.get(layer).copied().unwrap_or(layer + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ArraySource;

    #[test]
    fn rows_are_differences_and_shapes_must_match() {
        let array = |name: &str, dims: (usize, usize), v: Vec<f32>| {
            let a = ndarray::Array4::from_shape_vec((1, 1, dims.0, dims.1), v).unwrap();
            Box::new(ArraySource::from_f32(name, &a))
        };
        let a = array("a", (2, 3), vec![1.0, 2.0, 3.0, 4.0, 5.0, f32::INFINITY]);
        let b = array("b", (2, 3), vec![0.5, 2.0, 4.0, 0.0, 0.0, 1.0]);
        let d = DiffSource::new(a, b).unwrap();
        let mut raw = vec![0u8; 24];
        d.read_rows(0, 0, 0, &mut raw).unwrap();
        let mut v = vec![0f32; 6];
        DType::F32.decode(&raw, &mut v);
        assert_eq!(&v[..5], &[0.5, 0.0, -1.0, 4.0, 5.0]);
        assert!(v[5].is_nan());
        let c = array("c", (3, 2), vec![0.0; 6]);
        let a = array("a", (2, 3), vec![0.0; 6]);
        let e = DiffSource::new(a, c).err().unwrap();
        assert!(e.is_input_error());
        assert!(
            e.to_string()
                .contains("a has shape (1, 1, 2, 3) but c has (1, 1, 3, 2)"),
            "{e}"
        );
    }
}
