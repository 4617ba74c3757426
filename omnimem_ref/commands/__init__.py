"""Subcommands of the ``omnimem`` command line, one module each (see :mod:`omnimem_ref.cli`)."""
