//! Rows `A..B` of every head of stored attention (`--queries A..B` on a file): what the figure,
//! the statistics and the viewer read instead of the whole head, with the rows keeping their
//! places (the diagonal, so the causal mask, the statistics' distances and the query tokens
//! stay those of the file; the first row's index, so the axis and `argmax` name them `A..B`).
//! Only those rows are ever read.

use std::ops::Range;

use crate::error::Result;
use crate::source::qk::query_range;
use crate::source::{row_range, AttentionSource, DType, Shape};

/// A query-row slice of another source.
pub struct QueryRows<'a> {
    inner: Box<dyn AttentionSource + 'a>,
    rows: Range<usize>,
}

impl<'a> QueryRows<'a> {
    /// Rows `rows` (0-based, end excluded; `usize::MAX` as the end: to the last row) of every
    /// head of `inner`; an empty range or one past the rows is a bad option naming the input.
    pub fn new(inner: Box<dyn AttentionSource + 'a>, rows: Range<usize>) -> Result<QueryRows<'a>> {
        let rows = query_range(Some(rows), inner.shape().queries, inner.name())?;
        Ok(QueryRows { inner, rows })
    }
}

impl AttentionSource for QueryRows<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn shape(&self) -> Shape {
        Shape {
            queries: self.rows.len(),
            ..self.inner.shape()
        }
    }

    fn dtype(&self) -> DType {
        self.inner.dtype()
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        row_range(
            self.name(),
            self.shape(),
            self.dtype(),
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        self.inner
            .read_rows(layer, head, self.rows.start + row_start, dst)
    }

    fn diagonal(&self) -> i64 {
        self.inner.diagonal() + self.rows.start as i64
    }

    fn first_query(&self) -> usize {
        self.inner.first_query() + self.rows.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ArraySource;

    #[test]
    fn the_rows_read_and_keep_their_places() {
        let a = ndarray::Array4::from_shape_fn((1, 2, 6, 8), |(_, h, q, k)| {
            (h * 100 + q * 10 + k) as f32
        });
        let src = ArraySource::from_f32("a", &a);
        // rows 3..5 of 6 rows that are the last of 8 keys: row 0 is row 3, at position 5
        let rows = QueryRows::new(Box::new(&src), 3..5).unwrap();
        assert_eq!(rows.shape().queries, 2);
        assert_eq!((rows.diagonal(), rows.first_query()), (2 + 3, 3));
        let mut bytes = vec![0u8; 8 * 4];
        rows.read_rows(0, 1, 1, &mut bytes).unwrap();
        let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        assert_eq!(v[..3], [140.0, 141.0, 142.0]);
        assert!(rows.read_rows(0, 1, 2, &mut bytes).is_err());
        assert_eq!(
            QueryRows::new(Box::new(&src), 4..usize::MAX)
                .unwrap()
                .shape()
                .queries,
            2
        );
        for bad in [3..3, 5..7, 6..usize::MAX] {
            let e = QueryRows::new(Box::new(&src), bad)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("inside the 6 query rows of a"), "{e}");
        }
    }
}
