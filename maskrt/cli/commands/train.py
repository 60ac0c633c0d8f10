"""``maskrt train``: train a preset on the synthetic shapes (see :mod:`maskrt.train.loop`)."""

from __future__ import annotations

import sys

import click


@click.command("train", short_help="Train a preset on synthetic shapes.", epilog="""\b
Examples:
  maskrt train --out runs/shapes --iterations 4500 --batch-size 4 --lr 1.5e-3
  maskrt train --out runs/shapes --resume""")
@click.option("--arch", default="shapes", show_default=True, help="Model preset (see `maskrt models`).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for checkpoints and weights.")
@click.option("--iterations", type=int, default=6000, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True, help="Images per iteration.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak AdamW learning rate.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--warmup", type=int, default=200, show_default=True, help="Linear warm-up iterations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for initialisation and sampling.")
@click.option("--data-seed", type=int, default=1, show_default=True, help="Seed of the shapes generator.")
@click.option("--dataset-size", type=int, default=4000, show_default=True, help="Scenes per epoch (indices 0..N-1).")
@click.option("--checkpoint-every", type=int, default=500, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
def train_cmd(arch, out_dir, iterations, batch_size, lr, weight_decay, warmup, seed, data_seed, dataset_size,
              checkpoint_every, resume):
    """Train ARCH from scratch on generated shapes scenes; writes OUT/model.safetensors and OUT/train.json."""
    from maskrt.model.presets import get_preset
    from maskrt.train.loop import TrainConfig, train

    get_preset(arch)
    config = TrainConfig(out_dir=out_dir, arch=arch, iterations=iterations, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, warmup=warmup, seed=seed, data_seed=data_seed,
                         dataset_size=dataset_size, checkpoint_every=checkpoint_every,
                         command=["maskrt", *sys.argv[1:]])

    def log(iteration, means, seconds):
        if not sys.stderr.isatty():
            parts = " ".join(f"{k.replace('loss_', '')}={v:.4f}" for k, v in means.items())
            click.echo(f"[{iteration}/{iterations}] {seconds:7.0f}s {parts}", err=True)

    record = train(config, resume=resume, on_log=log)
    final = record["final_losses"]
    click.echo(f"trained {arch} for {iterations} iterations ({record['images_seen']} scenes seen); "
               f"final loss {final.get('loss', float('nan')):.4f}")
    click.echo(f"weights: {out_dir}/model.safetensors   record: {out_dir}/train.json")
