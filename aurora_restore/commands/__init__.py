"""Subcommands of the aurora-restore command."""
