#![no_main]
//! The `.safetensors` parser and tensor selection on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for tensor in [None, Some("a"), Some("attentions.0")] {
        if let Ok(layout) = attnviz::source::safetensors::parse(data, tensor) {
            let s = layout.shape;
            let end = layout.layer_offsets.iter().max().copied().unwrap_or(0)
                + (s.heads * s.queries * s.keys * layout.dtype.size()) as u64;
            assert!(end <= data.len() as u64, "a validated tensor lies inside the file");
        }
    }
});
