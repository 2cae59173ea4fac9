//! wgpu's experimental cooperative matrices (`attnviz bench --only coop`): where the adapter
//! has the 16 × 16 × 16 f16 × f16 + f32 configuration, the probe's tiles equal the exact
//! product bit for bit; where it does not, no device is opened and nothing fails.

mod common;

use attnviz::pool::CoopProbe;

#[test]
fn the_cooperative_probe_is_exact_where_the_adapter_has_it() {
    let Some(engine) = common::engine() else {
        return;
    };
    let gpu = &engine.gpu;
    let coop = gpu.with_cooperative_matrices().expect("opening the device");
    assert_eq!(coop.is_some(), gpu.has_cooperative_matrices());
    match coop {
        Some(coop) => {
            let features = coop.device.features();
            assert!(features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX));
            coop.scoped("the cooperative-matrix probe", || {
                CoopProbe::new(&coop).check(&coop)
            })
            .unwrap_or_else(|e| panic!("{}: {e}", gpu.info.name));
        }
        None => eprintln!(
            "{} has no 16 × 16 × 16 f16 cooperative matrices: nothing to check",
            gpu.info.name
        ),
    }
}
