"""asdflow: unsupervised anomalous sound detection for machine condition monitoring.

The core library. It knows nothing of KFP, BentoML or the cluster; the
components, pipelines and the server call into it.
"""

from asdflow.telemetry import disable_telemetry

disable_telemetry()

__version__ = "0.1.0"
