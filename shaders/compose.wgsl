// The figure: one instanced draw of axis-aligned quads in target pixels. Each quad is a heatmap
// cell (pooled colours, nearest-neighbour), a label (glyph coverage), the colorbar (LUT) or a
// solid fill. Texel lookups use integer pixel indices, so export and the CPU reference agree
// exactly. Keep `Quad` and the KIND_* ids in sync with src/compose/mod.rs.

struct Quad {
    // target pixels: x, y, width, height
    rect: vec4<i32>,
    kind: u32,
    // cells: first colour in `colors`; labels: atlas x | (atlas y << 16); colorbars: first
    // LUT entry
    src: u32,
    // cells: pooled width | (pooled height << 16); colorbars: LUT entries spanned
    src_size: u32,
    // labels and fills: RGBA8 foreground
    color: u32,
}

struct View {
    target_size: vec2<f32>,
    background: u32,
    _pad: u32,
}

const KIND_CELL: u32 = 0u;
const KIND_LABEL: u32 = 1u;
const KIND_COLORBAR: u32 = 2u;
const KIND_FILL: u32 = 3u;
// Not a kind of figure quad: the background under a copied cell's empty pixels (src/compose/
// copy.rs). Its pipeline blends with the source weighted by one minus the target's alpha, so a
// coloured pixel (alpha 1) keeps its bytes and an empty one (0, as the cell's colour buffer
// holds it) becomes the background: what the cell's own fragment draws there.
const KIND_UNDER: u32 = 4u;

// The kind of every quad a pipeline draws: src/compose/mod.rs draws each run of same-kind quads
// with the pipeline made for it, so a fragment executes only its own kind's code. (On GPUs the
// per-quad branch is uniform and nearly free; software rasterizers execute every branch's
// loads for every fragment.)
override KIND: u32 = KIND_CELL;

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var<storage, read> quads: array<Quad>;
@group(0) @binding(2) var<storage, read> colors: array<u32>;
@group(0) @binding(3) var<storage, read> lut: array<u32, 256>;
@group(0) @binding(4) var atlas: texture_2d<f32>;

struct VsOut {
    @builtin(position) pos: vec4<f32>,
    // the quad, passed flat so fragments read no storage for it
    @location(0) @interpolate(flat) rect: vec4<i32>,
    // src, src_size and color of the quad (its kind is the pipeline's)
    @location(1) @interpolate(flat) info: vec3<u32>,
}

@vertex
fn vs_main(@builtin(vertex_index) vi: u32, @builtin(instance_index) ii: u32) -> VsOut {
    let q = quads[ii];
    // two triangles: (0,0) (1,0) (0,1) / (0,1) (1,0) (1,1)
    let corner = vec2<i32>(i32((0x32u >> vi) & 1u), i32((0x2cu >> vi) & 1u));
    let p = vec2<f32>(q.rect.xy + corner * q.rect.zw);
    let ndc = vec2<f32>(p.x / view.target_size.x * 2.0 - 1.0, 1.0 - p.y / view.target_size.y * 2.0);
    var out: VsOut;
    out.pos = vec4<f32>(ndc, 0.0, 1.0);
    out.rect = q.rect;
    out.info = vec3<u32>(q.src, q.src_size, q.color);
    return out;
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let src = in.info.x;
    // pixel index inside the quad (fragment positions are pixel centres)
    let p = vec2<i32>(floor(in.pos.xy)) - in.rect.xy;
    if KIND == KIND_CELL {
        let size = vec2<u32>(in.info.y & 0xffffu, in.info.y >> 16u);
        // nearest texel; integer division only when the cell is magnified
        var t = vec2<u32>(p);
        if any(size != vec2<u32>(in.rect.zw)) {
            t = t * size / vec2<u32>(in.rect.zw);
        }
        let c = colors[src + t.y * size.x + t.x];
        if c == 0u {
            return unpack4x8unorm(view.background);
        }
        return unpack4x8unorm(c);
    }
    if KIND == KIND_UNDER {
        return unpack4x8unorm(view.background);
    }
    if KIND == KIND_LABEL {
        let origin = vec2<i32>(i32(src & 0xffffu), i32(src >> 16u));
        let coverage = textureLoad(atlas, origin + p, 0).r;
        return mix(unpack4x8unorm(view.background), unpack4x8unorm(in.info.z), coverage);
    }
    if KIND == KIND_COLORBAR {
        // LUT entries src .. src + src_size, the last at the top: the whole table for a
        // colorbar, one entry for a legend swatch. CPU twin: `draw_quads` in src/cpu/mod.rs.
        let n = in.info.y;
        let i = src + n - 1u - min(u32(p.y) * n / u32(in.rect.w), n - 1u);
        return unpack4x8unorm(lut[i]);
    }
    return unpack4x8unorm(in.info.z);
}
