//! `.safetensors` inputs: one tensor, a chosen tensor, and HuggingFace-style per-layer tensors
//! stacked as layers; F32, F16 and BF16.

mod common;

use std::path::Path;

use attnviz::source::{self, ArraySource, OpenOptions};
use attnviz::{AttentionSource, DType};
use common::random;

/// Writes tensors (name, dtype name, shape, little-endian bytes) as a .safetensors file.
fn write(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = String::from("{");
    let mut offset = 0;
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}",
            offset + bytes.len()
        ));
        offset += bytes.len();
    }
    header.push('}');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for t in tensors {
        file.extend_from_slice(&t.3);
    }
    std::fs::write(path, file).unwrap();
}

fn rows(src: &dyn AttentionSource, l: usize, h: usize) -> Vec<u8> {
    let s = src.shape();
    let mut out = vec![0u8; s.head_elements() * src.dtype().size()];
    src.read_rows(l, h, 0, &mut out).unwrap();
    out
}

#[test]
fn per_layer_tensors_stack_in_index_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attn.safetensors");
    let data = random(3, 2, 5, 7, 9);
    let layer = |l: usize| -> Vec<u8> {
        data.slice(ndarray::s![l, .., .., ..])
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    };
    // Written out of order, with a batch dimension of 1, and names that sort wrongly as text.
    write(
        &path,
        &[
            ("attentions.2", "F32", vec![1, 2, 5, 7], layer(2)),
            ("attentions.0", "F32", vec![1, 2, 5, 7], layer(0)),
            ("attentions.1", "F32", vec![1, 2, 5, 7], layer(1)),
        ],
    );
    let src = source::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(
        src.shape(),
        attnviz::Shape {
            layers: 3,
            heads: 2,
            queries: 5,
            keys: 7
        }
    );
    let reference = ArraySource::from_f32("ref", &data);
    for l in 0..3 {
        for h in 0..2 {
            assert_eq!(
                rows(&src, l, h),
                rows(&reference, l, h),
                "layer {l} head {h}"
            );
        }
    }
}

#[test]
fn half_dtypes_and_tensor_choice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attn.safetensors");
    let data = random(1, 2, 4, 6, 10);
    let f16: Vec<u8> = data
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = data
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    write(
        &path,
        &[
            ("a", "F16", vec![2, 4, 6], f16),
            ("b", "BF16", vec![2, 4, 6], bf16),
            ("ids", "I64", vec![3], vec![0; 24]),
        ],
    );
    let err = source::open(&path, &OpenOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("--tensor") && err.contains("a, b, ids"),
        "{err}"
    );
    for (name, dtype) in [("a", DType::F16), ("b", DType::BF16)] {
        let src = source::open(
            &path,
            &OpenOptions {
                tensor: Some(name.into()),
            },
        )
        .unwrap();
        assert_eq!(src.dtype(), dtype);
        let reference = ArraySource::from_f32_as("ref", &data, dtype);
        assert_eq!(rows(&src, 0, 1), rows(&reference, 0, 1));
    }
    let err = source::open(
        &path,
        &OpenOptions {
            tensor: Some("ids".into()),
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("dtype I64"), "{err}");
    let err = source::open(
        &path,
        &OpenOptions {
            tensor: Some("zz".into()),
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no tensor named 'zz'"), "{err}");
}

#[test]
fn lying_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    // Offsets claim more data than the file has.
    let mut file = Vec::new();
    let header = r#"{"a":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}"#;
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&[0u8; 16]);
    std::fs::write(&path, &file).unwrap();
    assert!(source::open(&path, &OpenOptions::default()).is_err());
    // A header length of a terabyte.
    let mut file = (1u64 << 40).to_le_bytes().to_vec();
    file.extend_from_slice(b"{}");
    std::fs::write(&path, &file).unwrap();
    let err = source::open(&path, &OpenOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("header length"), "{err}");
}
