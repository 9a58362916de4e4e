"""One module per ``image-composer`` subcommand.

Each module has ``register(subparsers, common)``, which adds its parser and sets
``func=run`` (a function ``Namespace -> int``). Add a command by adding a module and naming it in
:data:`COMMANDS`; cli.py stays thin.
"""

COMMANDS = ("build", "pkg", "run", "tarinfo", "verify", "diff", "attest", "attestations", "push",
            "cache", "lock", "report")
