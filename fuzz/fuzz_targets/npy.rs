#![no_main]
//! The `.npy` parser on arbitrary bytes: errors are fine, panics and huge allocations are not.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The file length is fuzzed too: the header may claim anything about the data after it.
    let (len, bytes) = match data.split_first() {
        Some((&b, rest)) => (rest.len() as u64 * (b as u64 + 1), rest),
        None => (0, data),
    };
    if let Ok(layout) = attnviz::source::npy::parse(bytes, len) {
        assert_eq!(layout.layer_offsets.len(), layout.shape.layers);
    }
});
