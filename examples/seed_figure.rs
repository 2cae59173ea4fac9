//! The seed figure through the library API: the demo model's layers 1 and 8, all eight heads.
//!
//! cargo run --release --example seed_figure -- seed.png

use attnviz::files::write_png;
use attnviz::source::DemoModel;
use attnviz::{Engine, Gpu, RenderOptions};

fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "seed.png".into());
    let engine = Engine::new(Gpu::new()?);
    let options = RenderOptions {
        layers: Some("1,8".into()),
        ..Default::default()
    };
    let figure = engine.render(&DemoModel::new(256), &options)?;
    write_png(out.as_ref(), figure.width, figure.height, &figure.rgba)?;
    println!(
        "{out}: {}x{} on {}",
        figure.width,
        figure.height,
        engine.gpu.describe()
    );
    Ok(())
}
