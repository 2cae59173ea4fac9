//! Long sequences: streaming ingest keeps a single hot entry of a 16384² head visible, the
//! producer API pools exactly like the file path, and raw dumps and synthetic files round-trip.

mod common;

use std::path::Path;
use std::process::Command;

use attnviz::cpu::HeadPooler;
use attnviz::pool::accum::Accum;
use attnviz::pool::geometry::{bin_edges, bin_of, CellGeometry};
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::{self, ArraySource, OpenOptions, Pattern, Stored, Synth, SynthSpec};
use attnviz::{AttentionSource, Colormap, DType, Norm, Reduce, RenderOptions};
use common::{engine, random, ulp_close};

fn attnviz(args: &[&str]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attnviz"));
    cmd.args(args);
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn single_hot_entry_in_a_16k_head_is_one_top_pixel() {
    let Some(e) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hot.npy");
    attnviz(&[
        "synth",
        "--seq",
        "16384",
        "--pattern",
        "hot",
        "--dtype",
        "f16",
        "-o",
        path.to_str().unwrap(),
    ]);
    let src = source::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(src.shape().queries, 16384);
    let spec = SynthSpec {
        seq: 16384,
        layers: 1,
        heads: 1,
        dtype: DType::F16,
        seed: 0,
        causal: false,
        pattern: Pattern::Hot,
    };
    let (hq, hk) = spec.hot_entry();
    let geometry = CellGeometry::new(16384, 16384, Some(256)).unwrap();
    let (y, x) = (
        bin_of(&bin_edges(16384, 256), hq as u32),
        bin_of(&bin_edges(16384, 256), hk as u32),
    );
    let pooled = e
        .pool(&src, &[(0, 0)], geometry, PoolOptions::default())
        .unwrap();
    let ranges = attnviz::color::norm::color_ranges(Norm::Head, &pooled.stats, 1);
    let lut = Colormap::Viridis.packed();
    let max = e
        .colorize(&pooled, &ranges, Reduce::Max, Colormap::Viridis)
        .unwrap()
        .remove(0);
    for (i, &c) in max.iter().enumerate() {
        if i == (y * 256 + x) as usize {
            assert_eq!(
                c, lut[255],
                "the hot entry's pixel is the top of the colormap"
            );
        } else {
            assert_eq!(c, lut[0], "pixel {i} should be dark");
        }
    }
    // Averaging over 64x64 entries hides it: 1/4096 of the range stays at the bottom.
    let mean = e
        .colorize(&pooled, &ranges, Reduce::Mean, Colormap::Viridis)
        .unwrap()
        .remove(0);
    assert!(mean.iter().all(|&c| c == lut[0] || c == lut[1]));
}

#[test]
fn producer_rows_pool_like_the_file_path() {
    let Some(e) = engine() else { return };
    let data = random(1, 1, 333, 517, 21);
    let flat: Vec<f32> = data.iter().copied().collect();
    let cell = Some(100);
    let mut acc = e
        .head_accumulator(333, 517, cell, PoolOptions::default())
        .unwrap();
    // Uneven blocks, as a decoder or a blockwise kernel would produce them.
    let mut row = 0;
    for n in [1usize, 7, 64, 100, 3, 158] {
        acc.push_rows(row, &flat[row * 517..(row + n) * 517])
            .unwrap();
        row += n;
    }
    assert_eq!(row, 333);
    let head = acc.finish().unwrap();
    let got = head.accum().unwrap();

    let geometry = CellGeometry::new(333, 517, cell).unwrap();
    let mut reference = HeadPooler::new(333, 517, geometry, PoolOptions::default());
    reference.push_rows(0, data.slice(ndarray::s![0, 0, .., ..]));
    for (a, b) in got.iter().zip(&reference.accum) {
        assert_eq!(
            (a.max, a.min, a.sum, a.count_bad),
            (b.max, b.min, b.sum, b.count_bad)
        );
    }
    // The mean of each block, against f64 arithmetic.
    let rows = bin_edges(333, geometry.pooled_h);
    let cols = bin_edges(517, geometry.pooled_w);
    for (i, a) in got.iter().enumerate() {
        let (y, x) = (
            i / geometry.pooled_w as usize,
            i % geometry.pooled_w as usize,
        );
        let mut s = 0f64;
        let mut n = 0;
        for q in rows[y]..rows[y + 1] {
            for k in cols[x]..cols[x + 1] {
                s += data[[0, 0, q as usize, k as usize]] as f64;
                n += 1;
            }
        }
        assert_eq!(a.count(), n);
        let mean = a.value(Reduce::Mean).unwrap() as f64;
        assert!(
            (mean - s / n as f64).abs() <= 1e-6 * (s / n as f64).abs().max(1e-6),
            "pixel {i}"
        );
    }
    // The same data through the file path gives the same picture.
    let src = ArraySource::from_f32("same", &data);
    let fig = e
        .render(
            &src,
            &RenderOptions {
                cell,
                ..Default::default()
            },
        )
        .unwrap();
    let rgba = head
        .rgba(Norm::Head, Reduce::Max, Colormap::Viridis)
        .unwrap();
    let c = fig.plan.layout.cells[0];
    assert_eq!((head.width(), head.height()), (c.width, c.height));
    for y in 0..c.height {
        let row = ((c.y + y) * fig.width + c.x) as usize * 4;
        let src_row = (y * c.width) as usize * 4;
        assert_eq!(
            &fig.rgba[row..row + c.width as usize * 4],
            &rgba[src_row..src_row + c.width as usize * 4]
        );
    }
}

#[test]
fn out_of_range_pushes_are_refused() {
    let Some(e) = engine() else { return };
    let mut acc = e
        .head_accumulator(10, 10, None, PoolOptions::default())
        .unwrap();
    assert!(acc.push_rows(0, &[0.0; 15]).is_err(), "not whole rows");
    assert!(acc.push_rows(5, &[0.0; 60]).is_err(), "past the last row");
}

fn read_all(src: &dyn AttentionSource) -> Vec<u8> {
    let s = src.shape();
    let mut out = Vec::new();
    for l in 0..s.layers {
        for h in 0..s.heads {
            let mut buf = vec![0u8; s.head_elements() * src.dtype().size()];
            src.read_rows(l, h, 0, &mut buf).unwrap();
            out.extend(buf);
        }
    }
    out
}

#[test]
fn synth_files_and_raw_dumps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let args = [
        "--seq", "96", "--layers", "2", "--heads", "3", "--seed", "5", "--causal",
    ];
    let spec = SynthSpec {
        seq: 96,
        layers: 2,
        heads: 3,
        dtype: DType::F16,
        seed: 5,
        causal: true,
        pattern: Pattern::Attention,
    };
    let expected = read_all(&Synth::new(spec.clone()).unwrap());
    for (name, dtype) in [
        ("a.npy", "f16"),
        ("a.safetensors", "f16"),
        ("b.safetensors", "bf16"),
        ("c.bin", "f16"),
    ] {
        let mut a: Vec<&str> = args.to_vec();
        let out = p(name);
        a.extend(["--dtype", dtype, "-o", &out]);
        let mut all = vec!["synth"];
        all.extend(a);
        attnviz(&all);
        let src = if name.ends_with(".bin") {
            source::open_raw(Path::new(&out), &[2, 3, 96, 96], Stored::Native(DType::F16)).unwrap()
        } else {
            source::open(Path::new(&out), &OpenOptions::default()).unwrap()
        };
        let want = if dtype == "bf16" {
            read_all(
                &Synth::new(SynthSpec {
                    dtype: DType::BF16,
                    ..spec.clone()
                })
                .unwrap(),
            )
        } else {
            expected.clone()
        };
        assert_eq!(read_all(&src), want, "{name}");
    }
    // The raw dump renders exactly like the .npy.
    let (a, b) = (p("a.png"), p("c.png"));
    attnviz(&["render", &p("a.npy"), "-o", &a]);
    attnviz(&[
        "render",
        &p("c.bin"),
        "--shape",
        "2,3,96,96",
        "--dtype",
        "f16",
        "-o",
        &b,
    ]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // A raw dump whose size does not match its --shape is refused.
    let err = source::open_raw(
        Path::new(&p("c.bin")),
        &[2, 3, 96, 95],
        Stored::Native(DType::F16),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("needs"), "{err}");
}

/// Rows already on the GPU (a producer's output buffer) pool exactly like rows pushed from the
/// host, interleaved with host rows and at any row offset inside the buffer, in every mode.
#[test]
fn gpu_resident_rows_pool_like_host_rows() {
    use wgpu::util::DeviceExt;
    let Some(mut e) = engine() else { return };
    // Small chunks so host rows are flushed in several pieces around the resident ones.
    e.chunk_bytes = 4096;
    let (q, k) = (150usize, 131usize);
    let mut data = random(1, 1, q, k, 22);
    for r in 0..q {
        for c in r + 1..k {
            data[[0, 0, r, c]] = 0.0;
        }
    }
    data[[0, 0, 77, 5]] = f32::NAN;
    let flat: Vec<f32> = data.iter().copied().collect();
    // Three floats of padding in front, and the size rounded up to 16 bytes.
    let mut padded = vec![0f32; 3];
    padded.extend_from_slice(&flat);
    padded.resize(padded.len().next_multiple_of(4), 0.0);
    let buffer = e
        .gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("test.producer_rows"),
            contents: bytemuck::cast_slice(&padded),
            usage: wgpu::BufferUsages::COPY_SRC,
        });
    let geometry = CellGeometry::new(q, k, Some(40)).unwrap();
    let src = ArraySource::from_f32("resident", &data);
    for row_norm in [false, true] {
        for causal in [Causal::Off, Causal::On, Causal::Auto] {
            let options = PoolOptions {
                row_norm,
                causal,
                diagonal: None,
            };
            let mut acc = e.head_accumulator(q, k, Some(40), options).unwrap();
            // rows 0..37 from the host, 37..120 resident, 120..150 from the host
            acc.push_rows(0, &flat[..37 * k]).unwrap();
            acc.push_gpu_rows(37, 83, &buffer, (3 + 37 * k as u64) * 4)
                .unwrap();
            acc.push_rows(120, &flat[120 * k..]).unwrap();
            let head = acc.finish().unwrap();
            let got = head.accum().unwrap();
            // The same rows all from the host: the same shader on the same values, bit for bit.
            let mut host = e.head_accumulator(q, k, Some(40), options).unwrap();
            host.push_rows(0, &flat).unwrap();
            let host = host.finish().unwrap().accum().unwrap();
            let bits = |a: &Accum| {
                (
                    a.max.to_bits(),
                    a.min.to_bits(),
                    a.sum.to_bits(),
                    a.count_bad,
                )
            };
            for (i, (a, b)) in got.iter().zip(&host).enumerate() {
                assert_eq!(
                    bits(a),
                    bits(b),
                    "{options:?} pixel {i}: resident against host"
                );
            }
            // And the CPU twin: exact, or within a few ULP where row norm divides (WGSL's
            // division is accurate to 2.5 ULP; NVIDIA's is not correctly rounded).
            let reference = attnviz::cpu::pool_cells(&src, &[(0, 0)], geometry, options)
                .unwrap()
                .remove(0);
            for (i, (a, b)) in got.iter().zip(&reference.accum).enumerate() {
                if row_norm {
                    assert_eq!(a.count_bad, b.count_bad, "{options:?} pixel {i}");
                    for (x, y) in [(a.max, b.max), (a.min, b.min), (a.sum, b.sum)] {
                        assert!(ulp_close(x, y, 8), "{options:?} pixel {i}: {a:?} {b:?}");
                    }
                } else {
                    assert_eq!(bits(a), bits(b), "{options:?} pixel {i}: against the CPU");
                }
            }
        }
    }
    // Buffers the pool pass cannot copy whole are refused with a clear error.
    let refused = |size: u64, usage: wgpu::BufferUsages| {
        let buffer = e.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        });
        let mut acc = e
            .head_accumulator(q, k, None, PoolOptions::default())
            .unwrap();
        acc.push_gpu_rows(0, 1, &buffer, 0).unwrap_err().to_string()
    };
    let err = refused(20, wgpu::BufferUsages::COPY_SRC);
    assert!(err.contains("multiple of 16"), "{err}");
    let err = refused(k as u64 * 4, wgpu::BufferUsages::STORAGE);
    assert!(err.contains("COPY_SRC"), "{err}");
}
