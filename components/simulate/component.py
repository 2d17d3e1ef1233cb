"""simulate: simulated anomalous spectrograms of one machine type (asdflow.simulation), for inspection
and for detectors that train on them."""

# No `from __future__ import annotations`: KFP reads the Input[...]/Output[...] annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def simulate_anomalies(
    data: Input[Dataset],  # the fetched clips: as an input, KFP materializes them at the paths the manifest names
    manifest: Input[Dataset],
    machine_type: str,
    config_profile: str,
    config_overrides: str,
    simulated: Output[Dataset],
    n: int = 0,
    method: str = "",
    plot: bool = True,
):
    """`simulated`: normal/, simulated/, masks/ (npy, dB log-mel patches), normalization.npz, metadata.json
    and, with `plot`, plots/*.png; from the manifest's normal training clips of `machine_type`
    (`simulation` config; n = 0 / method = "": the config's)."""
    from asdflow.data.manifest import Manifest
    from asdflow.pipeline_ops import component_config
    from asdflow.simulation.simulate import simulate_anomalies as simulate

    config = component_config(config_profile, config_overrides)
    folder = simulate(Manifest.load(manifest.path), machine_type, config, simulated.path, n=n or None,
                      method=method or None)
    if plot:
        from asdflow.simulation.plots import plot_simulation_folder

        plot_simulation_folder(folder)
    simulated.metadata.update({"machine_type": machine_type, "method": method or config.simulation.method,
                               "n": n or config.simulation.n_samples})
