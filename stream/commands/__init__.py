"""Subcommands of ``survey-classifier``; the registry is :data:`stream.cli.COMMANDS`."""
