"""ckpt_toolkit: probe, fine-tune and compare series of pretraining checkpoints."""

__version__ = "0.1.0"
