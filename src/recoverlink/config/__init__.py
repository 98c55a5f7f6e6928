"""Loading and validating config, catalog and rules from YAML, with errors that point at a line."""
