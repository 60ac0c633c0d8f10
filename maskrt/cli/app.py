"""The ``maskrt`` command: the click group, the error policy, and the registry of commands.

Only click is imported at module level (the command modules import what they need inside their functions), so
``maskrt --help`` works without torch. The policy, enforced here once for every command:

* a :class:`maskrt.MaskrtError` (the user's mistake) prints ``error: <one line>`` and exits with status 2;
* a :class:`maskrt.core.errors.MaskrtWarning` (a notice, such as an image shrunk to fit the model) prints
  ``note: <one line>``;
* Ctrl-C prints ``interrupted`` and exits with status 130 (commands keep what finished and say so);
* anything else is a bug and keeps its traceback.

Commands live one per module in :mod:`maskrt.cli.commands` and know nothing of this module; the registry
(:data:`maskrt.cli.commands.COMMANDS`) is read here, so imports point one way.
"""

from __future__ import annotations

import sys
import warnings

import click

from maskrt import __version__
from maskrt.cli.commands import COMMANDS
from maskrt.core.errors import MaskrtError, MaskrtWarning


class MaskrtGroup(click.Group):
    """A click group that applies the error policy (see the module docstring) and lists commands in the order
    of the registry."""

    def invoke(self, ctx):
        try:
            with warnings.catch_warnings():
                shown = warnings.showwarning

                def show(message, category, filename, lineno, file=None, line=None):
                    if issubclass(category, MaskrtWarning):
                        click.echo(f"note: {' '.join(str(message).split())}", err=True)
                    else:
                        shown(message, category, filename, lineno, file, line)

                warnings.showwarning = show
                return super().invoke(ctx)
        except MaskrtError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted (Ctrl-C)", err=True)
            ctx.exit(130)

    def list_commands(self, ctx):
        return list(self.commands)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with its usage errors (bad option values, missing arguments) as one line, exit 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            # Without standalone mode click returns ctx.exit()'s code instead of exiting (commands return None).
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"error: {' '.join(e.format_message().split())}{where}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:  # Ctrl-C (or end of input) while click itself was prompting or parsing
            click.echo("interrupted (Ctrl-C)", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=MaskrtGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", "-V", prog_name="maskrt")
def cli() -> None:
    """maskrt: Mask R-CNN from PyTorch to ONNX and TensorRT, with one runtime that reports latency and FPS.

    \b
    Start here (offline, on the embedded model):
      maskrt demo
    """


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="maskrt")


if __name__ == "__main__":
    main()
