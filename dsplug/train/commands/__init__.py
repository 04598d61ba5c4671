"""What the CLI subcommands do, given their parsed settings (``dsplug.cli`` only parses).

One module per command: ``train`` (with ``setup``: its settings and datasets, and
``run_folder``: where it runs), ``evaluate``, ``predict``, ``export``, ``compare`` and
``demo``; ``_common`` holds what they share. Every ``*_command`` takes an
``argparse.Namespace`` built by ``dsplug.cli`` and returns an exit status; errors are raised
(ValueError and friends) for the CLI to print.
"""

from ._common import COMPARE_FILES as COMPARE_FILES
from ._common import EVALUATE_FILES as EVALUATE_FILES
from ._common import EXPECTED_FAILURES as EXPECTED_FAILURES
from ._common import RUN_FILES as RUN_FILES
from ._common import PredictFailures as PredictFailures
from ._common import parse_options as parse_options
from .compare import compare_command as compare_command
from .demo import demo_command as demo_command
from .evaluate import evaluate_command as evaluate_command
from .export import export_command as export_command
from .predict import predict_command as predict_command
from .run_folder import resume_hint as resume_hint
from .setup import DEFAULT_ENCODER as DEFAULT_ENCODER
from .setup import OWN_NET_DEFAULTS as OWN_NET_DEFAULTS
from .setup import check_applicable as check_applicable
from .setup import model_settings as model_settings
from .train import train_command as train_command

__all__ = [
    "COMPARE_FILES",
    "DEFAULT_ENCODER",
    "EVALUATE_FILES",
    "EXPECTED_FAILURES",
    "OWN_NET_DEFAULTS",
    "RUN_FILES",
    "PredictFailures",
    "check_applicable",
    "compare_command",
    "demo_command",
    "evaluate_command",
    "export_command",
    "model_settings",
    "parse_options",
    "predict_command",
    "resume_hint",
    "train_command",
]
