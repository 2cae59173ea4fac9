#![no_main]
//! `--layers`/`--heads` selections and `--shape` on arbitrary strings.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let count = text.len() % 97;
    if let Ok(sel) = attnviz::figure::select::parse_selection(Some(text), count, "layer") {
        assert!(sel.iter().all(|&i| i < count));
    }
    if let Ok(dims) = attnviz::source::parse_shape(text) {
        assert!((2..=4).contains(&dims.len()) && !dims.contains(&0));
    }
});
