"""``python -m training RECIPE [--out DIR] [key=value ...]`` -- the same as ``evalsuite train``."""

from training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
