//! The one-pass module's WGSL: the template (`shaders/qk_pool.wgsl`, `qk_pool_rows.wgsl`) with
//! the head width, window, rows per lane and subgroup step written in, and its per-row loops
//! written out. Text only, so that it is built and checked (tests/shaders.rs) without a device.

use crate::gpu::shaders;

/// The row kernel's step over `shared` keys (4 or 8) handed out by subgroupBroadcast: each of
/// `shared` lanes loads one key's vec4s, every lane takes all of them for each of its `rows`
/// query rows; the products of each score are added in the same order as `score4`'s. Scores
/// of row h are elements h·(shared / 4).. of the result.
fn shared_scores(d4: u32, shared: u32, rows: u32) -> String {
    let parts = shared / 4;
    let n = parts * rows;
    let mut f = format!("fn score_shared(o: u32) -> array<vec4<f32>, {n}> {{\n");
    for a in 0..n {
        f += &format!("    var a{a} = vec4<f32>();\n");
    }
    for v in 0..d4 {
        f += &format!("    {{\n        let kv = kload(o + {v}u);\n");
        for p in 0..parts {
            for t in 0..4 {
                f += &format!(
                    "        let k{p}_{t} = subgroupBroadcast(kv, {}u);\n",
                    4 * p + t
                );
            }
            for h in 0..rows {
                let qv = format!("qrow[{}u]", h * d4 + v);
                let b: Vec<String> = (0..4).map(|t| format!("dot({qv}, k{p}_{t})")).collect();
                f += &format!(
                    "        a{} += vec4<f32>({});\n",
                    h * parts + p,
                    b.join(", ")
                );
            }
        }
        f += "    }\n";
    }
    let all: Vec<String> = (0..n).map(|a| format!("a{a}")).collect();
    f + &format!(
        "    return array<vec4<f32>, {n}>({});\n}}\n",
        all.join(", ")
    )
}

/// The one-pass shader for `d4` vec4s of head dimension, staged `slice` at a time by the tiled
/// kernel and read `window` keys at a time by the row kernel (at least 16; a row kernel that
/// no dispatch uses is still built with one), `rows` query rows per invocation, `shared` keys
/// per step shared through subgroups (0: no subgroup operations; 4 keys per step, each lane
/// loading them all); `prob_rows` stores into a chunk texture (`probs_texture`,
/// `shaders/qk_probs_texture.wgsl`) or a storage buffer.
pub fn kernel_source(
    d4: u32,
    slice: u32,
    window: u32,
    rows: u32,
    shared: u32,
    probs_texture: bool,
) -> String {
    let window = window.max(16);
    // The row kernel's unrolled loops: constant indices keep the query rows in registers on
    // every compiler, with no reliance on a driver's loop unrolling.
    let qload: String = (0..rows)
        .flat_map(|h| {
            (0..d4).map(move |v| {
                format!(
                    "qrow[{}u] = q_word((z * params.q_rows + sp.r[{h}]) * D4 + {v}u);\n    ",
                    h * d4 + v
                )
            })
        })
        .collect();
    let score4: String = (0..rows)
        .flat_map(|h| {
            (0..d4).map(move |v| {
                let k = |t: u32| format!("dot(qrow[{}u], kload(o + {}u))", h * d4 + v, t * d4 + v);
                format!(
                    "s[{h}] += vec4<f32>({}, {}, {}, {});\n    ",
                    k(0),
                    k(1),
                    k(2),
                    k(3)
                )
            })
        })
        .collect();
    // (naga takes subgroup builtins without WGSL's `enable subgroups;`, which it does not parse
    // yet; the device must have `Features::SUBGROUP`)
    // prob_rows' step: the same scores, each four keys' probabilities stored
    let prob = |raw: &str, h: u32, at: u32| {
        format!(
            "if sp.in_chunk[{h}] {{\n            store4(base[{h}], j + {at}u, hi, prob4({raw}, seen4(j + {at}u, rl[{h}], rh[{h}]), lse[{h}]));\n        }}\n        "
        )
    };
    let per_row = |parts: u32, each: &dyn Fn(u32, u32, u32) -> String| -> String {
        (0..rows)
            .flat_map(|h| (0..parts).map(move |p| (h, p)))
            .map(|(h, p)| each(h, p, h * parts + p))
            .collect()
    };
    // (with subgroups, a subgroup walks keys from the first any of its lanes' rows sees to the
    // last, so that every lane takes every step of the keys it hands round)
    let (shared_fn, lane_arg, subgroup_hi, step, pstep, kstep) = if shared > 0 {
        let parts = shared / 4;
        let folds = per_row(parts, &|h, p, a| {
            format!(
                "st[{h}] = fold4(st[{h}], sc[{a}], seen4(j + {}u, rl[{h}], rh[{h}]));\n            ",
                4 * p
            )
        });
        let stores = per_row(parts, &|h, p, a| prob(&format!("sc[{a}]"), h, 4 * p));
        let load = "let sc = score_shared(o + (sg_lane % KSTEP) * D4);";
        (
            shared_scores(d4, shared, rows),
            "@builtin(subgroup_invocation_id) sg_lane: u32,",
            "own = subgroupMax(own);\n    own_lo = subgroupMin(own_lo);",
            format!("{load}\n            {folds}"),
            format!("{load}\n        {stores}"),
            shared,
        )
    } else {
        let folds = per_row(1, &|h, _, _| {
            format!("st[{h}] = fold4(st[{h}], sc[{h}], seen4(j, rl[{h}], rh[{h}]));\n            ")
        });
        let stores = per_row(1, &|h, _, _| prob(&format!("sc[{h}]"), h, 0));
        (
            String::new(),
            "",
            "",
            format!("let sc = score4(o);\n            {folds}"),
            format!("let sc = score4(o);\n        {stores}"),
            4,
        )
    };
    let source = shaders::QK_POOL_TEMPLATE
        .replace("const D4: u32 = 16u;", &format!("const D4: u32 = {d4}u;"))
        .replace(
            "const SLICE: u32 = 8u;",
            &format!("const SLICE: u32 = {slice}u;"),
        )
        .replace(
            "const KWD4: u32 = 4096u;",
            &format!("const KWD4: u32 = {}u;", window * d4),
        )
        .replace(
            "const KSTEP: u32 = 4u;",
            &format!("const KSTEP: u32 = {kstep}u;"),
        )
        .replace("const R: u32 = 1u;", &format!("const R: u32 = {rows}u;"))
        .replace(
            "const RD4: u32 = 16u;",
            &format!("const RD4: u32 = {}u;", rows * d4),
        )
        .replace("// @QLOAD", &qload)
        .replace("// @SCORE4", &score4)
        .replace("/* @LANE_ARG */", lane_arg)
        .replace("// @SUBGROUP_HI", subgroup_hi)
        .replace("// @STEP", &step)
        .replace("// @PSTEP", &pstep);
    let source = if probs_texture {
        let (begin, end) = ("// @PROBS_OUT {", "// @PROBS_OUT }");
        let (Some(a), Some(b)) = (source.find(begin), source.find(end)) else {
            panic!("the row kernel's template lost its @PROBS_OUT markers");
        };
        format!(
            "{}{}{}",
            &source[..a],
            shaders::QK_PROBS_TEXTURE,
            &source[b + end.len()..]
        )
    } else {
        source
    };
    unroll_rows(&(source + &shared_fn), rows)
}

/// The template's per-row loops (`for (var h = 0u; h < R; h++) { … }`, bodies without `break`
/// or `continue`) written out, one block per row with `h` a constant: every array a row owns
/// is then indexed by constants from the start, which no driver has to discover. (lavapipe
/// unrolls the loops itself, but its NIR passes took 114 ms over the 8-row kernel so, 47 ms
/// written out: a fresh process's start-up.)
fn unroll_rows(source: &str, rows: u32) -> String {
    const HEAD: &str = "for (var h = 0u; h < R; h++) {";
    let mut out = String::with_capacity(source.len() * 2);
    let mut rest = source;
    while let Some(at) = rest.find(HEAD) {
        out += &rest[..at];
        let body_start = at + HEAD.len();
        let mut depth = 1;
        let end = rest[body_start..]
            .char_indices()
            .find(|&(_, c)| {
                depth += i32::from(c == '{') - i32::from(c == '}');
                depth == 0
            })
            .map(|(i, _)| body_start + i)
            .expect("a per-row loop of the row kernel's template without its closing brace");
        let body = &rest[body_start..end];
        for h in 0..rows {
            out += &format!("{{ let h = {h}u;{body}}}");
        }
        rest = &rest[end + 1..];
    }
    out + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_loops_are_written_out_with_constant_rows() {
        let src = "a; for (var h = 0u; h < R; h++) { if x[h] { y[h] = 1u; } } b; \
                   for (var h = 0u; h < R; h++) { z[h] = 0u; } c;";
        assert_eq!(
            unroll_rows(src, 2),
            "a; { let h = 0u; if x[h] { y[h] = 1u; } }{ let h = 1u; if x[h] { y[h] = 1u; } } \
             b; { let h = 0u; z[h] = 0u; }{ let h = 1u; z[h] = 0u; } c;"
        );
        assert_eq!(unroll_rows("no loops", 4), "no loops");
    }

    #[test]
    fn the_row_kernel_has_no_per_row_loop_left() {
        for rows in [1, 2, 4, 8] {
            let src = kernel_source(16, 8, 256, rows, 8, false);
            assert!(!src.contains("h++"), "{rows} rows: a per-row loop left");
            assert!(src.contains(&format!("let h = {}u;", rows - 1)));
        }
    }

    #[test]
    fn stored_probabilities_go_to_a_buffer_or_the_chunk_texture() {
        let buffer = kernel_source(16, 8, 256, 4, 0, false);
        let texture = kernel_source(16, 8, 256, 4, 0, true);
        assert!(buffer.contains("var<storage, read_write> probs: array<f32>;"));
        assert!(!buffer.contains("probs_out"));
        assert!(texture.contains("var probs_out: texture_storage_2d<rgba32uint, write>;"));
        assert!(!texture.contains("var<storage, read_write> probs:"));
        assert_eq!(texture.matches("fn store4(").count(), 1);
    }
}
