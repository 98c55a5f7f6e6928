"""The pure core: values and decisions, no I/O (see DESIGN.md, Layout)."""
