"""Developer tools shipped with the package: the accumulation lint."""
