"""Subcommands of the septet console command, one module each."""
