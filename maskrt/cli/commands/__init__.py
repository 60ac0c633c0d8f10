"""One module per ``maskrt`` command, each thin over the Python API; :data:`COMMANDS` is the registry that
:mod:`maskrt.cli.app` reads (commands never import the app)."""

from maskrt.cli.commands.bench import bench_cmd
from maskrt.cli.commands.build import build_cmd
from maskrt.cli.commands.check import check_cmd
from maskrt.cli.commands.data import data_group
from maskrt.cli.commands.demo import demo_cmd
from maskrt.cli.commands.detect import detect_cmd
from maskrt.cli.commands.env import env_cmd
from maskrt.cli.commands.eval import eval_cmd
from maskrt.cli.commands.explain import explain_group
from maskrt.cli.commands.export import export_cmd
from maskrt.cli.commands.models import models_cmd
from maskrt.cli.commands.plugins import plugins_group
from maskrt.cli.commands.predict import predict_cmd
from maskrt.cli.commands.profile import profile_cmd
from maskrt.cli.commands.serve import serve_cmd
from maskrt.cli.commands.train import train_cmd
from maskrt.cli.commands.triton import triton_cmd

#: The commands in the order ``maskrt --help`` lists them: the main path first.
COMMANDS = (demo_cmd, export_cmd, check_cmd, predict_cmd, eval_cmd, profile_cmd, bench_cmd, build_cmd, serve_cmd,
            triton_cmd, env_cmd, plugins_group, models_cmd, detect_cmd, data_group, train_cmd, explain_group)
