"""The CLI subcommands: each module declares its command's options (``add_parser``) and runs
it from the parsed settings (``dsplug.cli`` builds the parser from them and dispatches).

One module per command: ``train`` (with ``setup``: its model and data options, settings and
datasets, ``run_folder``: where it runs, ``patches`` and ``semi``: their options and data),
``evaluate``, ``predict``, ``export`` (the command line runs it through
``dsplug.export.command``, which hands in the writer), ``compare`` and ``demo``; ``arguments``
holds the option groups they share and ``_common`` the rest they share. Every ``*_command``
takes an ``argparse.Namespace`` and returns an exit status; errors are raised (ValueError and
friends) for the CLI to print.
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
