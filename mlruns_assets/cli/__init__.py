"""The ``mlruns-assets`` command line: one module per subcommand."""
