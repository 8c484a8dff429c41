"""`tuneforge`: the only face of the package. Every command is declared in one of these modules, a few lines each,
calling one library function. Library imports sit inside the command bodies so `tuneforge --help` stays instant
(no torch, no transformers until a command needs them).

How to add a command: declare it with `@app.command()` (or `@data_app.command()`) in the module of its family
below, call one library function through `guarded`, and import that module here.
"""

from tuneforge.cli._app import app, data_app, guarded
from tuneforge.cli import training, evaluate, models, data, convert, serve, export, experiments, compare  # noqa: F401,I001  (importing declares the commands, in help order)

__all__ = ["app", "data_app", "guarded"]
