import click


@click.command("triton")
def triton_cmd():
    """placeholder"""
