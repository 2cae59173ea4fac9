//! The colormap tables equal matplotlib's `cmap(np.arange(256), bytes=True)` byte for byte.

use attnviz::Colormap;

#[test]
fn colormap_tables_equal_matplotlib() {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("data/matplotlib-colormaps.json")).unwrap();
    let maps = json["colormaps"].as_object().unwrap();
    assert_eq!(
        maps.len(),
        Colormap::ALL.len(),
        "every matplotlib map is offered"
    );
    for cmap in Colormap::ALL {
        let expected = maps[cmap.name()].as_array().unwrap();
        assert_eq!(expected.len(), 256);
        for (i, rgb) in expected.iter().enumerate() {
            let rgb: Vec<u8> = rgb
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect();
            assert_eq!(cmap.table()[i][..], rgb[..], "{} entry {i}", cmap.name());
        }
    }
}
